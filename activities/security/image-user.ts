/**
 * The USER an image runs as when the spec sets none: read from the engine when it has the image, else from the
 * image's configuration in its registry. '' when neither answers: the root-user rule then judges the image as root.
 */
import type { PinnedImage } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { call } from '../docker/engine.js';
import { registryUrl } from '../registry.js';

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const TIMEOUT_MS = 10_000;
const ARCHITECTURES: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm' };

interface ManifestOrIndex {
  manifests?: { digest: string; platform?: { os?: string; architecture?: string } }[];
  config?: { digest: string };
}

async function registryJson<T>(repository: string, path: string, accept?: string): Promise<T> {
  const response = await fetch(registryUrl(repository, path), {
    headers: accept ? { Accept: accept } : {},
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return (await response.json()) as T;
}

async function registryImageUser(repository: string, digest: string): Promise<string | undefined> {
  let manifest = await registryJson<ManifestOrIndex>(repository, `manifests/${digest}`, MANIFEST_TYPES);
  if (manifest.manifests) {
    const architecture = ARCHITECTURES[process.arch] ?? process.arch;
    const chosen =
      manifest.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === architecture) ??
      manifest.manifests[0];
    if (!chosen) return undefined;
    manifest = await registryJson<ManifestOrIndex>(repository, `manifests/${chosen.digest}`, MANIFEST_TYPES);
  }
  if (!manifest.config) return undefined;
  const config = await registryJson<{ config?: { User?: string } }>(repository, `blobs/${manifest.config.digest}`);
  return config.config?.User ?? '';
}

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
