/**
 * The Docker target's fence: a labelled volume named after the live container, `<service>_<environment>.fence`,
 * holding the token of the attempt allowed to change it. A volume needs no image and is never mounted; its labels
 * cannot change, so storing another token replaces the volume, and creating one that exists returns the existing one:
 * reading it back tells who won.
 */
import type Docker from 'dockerode';
import type { DockerTarget } from '../../domain/target.js';
import { type Fence, type FenceToken, fenceOn } from '../targets/attempt.js';
import { activeName, statusCode } from './engine.js';

const HOLDER_LABEL = 'deploy-agent.fence-holder';

export const fenceName = (target: Pick<DockerTarget, 'service' | 'environment'>): string =>
  `${activeName(target)}.fence`;

export function dockerFence(docker: Docker, target: DockerTarget, token: FenceToken): Fence {
  const name = fenceName(target);
  return fenceOn(
    {
      where: `Docker container ${activeName(target)}`,
      async read() {
        try {
          const volume = (await docker.getVolume(name).inspect()) as { Labels?: Record<string, string> | null };
          return volume.Labels?.[HOLDER_LABEL];
        } catch (error) {
          if (statusCode(error) === 404) return undefined;
          throw error;
        }
      },
      async write(holder) {
        await docker
          .getVolume(name)
          .remove()
          .catch((error: unknown) => {
            if (statusCode(error) !== 404) throw error;
          });
        await docker.createVolume({ Name: name, Labels: { [HOLDER_LABEL]: holder } });
      },
    },
    token,
  );
}
