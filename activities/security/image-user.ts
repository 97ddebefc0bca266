/**
 * The USER an image runs as when the spec sets none: read from the engine when it has the image, else from the
 * image's configuration in its registry. '' when neither answers: the root-user rule then judges the image as root.
 */
import type { PinnedImage } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { call } from '../docker/engine.js';
import { registryImageUser } from '../registry.js';

export async function imageUser(target: DockerTarget, image: PinnedImage): Promise<string | undefined> {
  const local = await call(target, async (docker) => {
    try {
      return (await docker.getImage(image.reference).inspect()).Config.User ?? '';
    } catch {
      return undefined;
    }
  }).catch(() => undefined);
  if (local !== undefined) return local;
  const repository = image.reference.split('@')[0] ?? image.reference;
  return registryImageUser(repository, image.digest).catch(() => undefined);
}
