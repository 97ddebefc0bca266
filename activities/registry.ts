/**
 * Image resolution straight from a registry's HTTP API (distribution v2), for targets without a Docker engine to ask.
 * Loopback registries are spoken to over plain HTTP, like Docker does; every other one over HTTPS.
 */
import type { PinnedImage } from '../domain/release.js';
import { fail, unreachable } from '../domain/failures.js';

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
const TIMEOUT_MS = 10_000;

function split(repository: string): { registry: string; name: string } {
  const slash = repository.indexOf('/');
  const first = slash < 0 ? '' : repository.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost')
    return { registry: first, name: repository.slice(slash + 1) };
  return { registry: 'registry-1.docker.io', name: first ? repository : `library/${repository}` };
}

/** The registry API URL of `path` (after /v2/<name>/) for a repository: plain HTTP on loopback, else HTTPS. */
export function registryUrl(repository: string, path: string): string {
  const { registry, name } = split(repository);
  const loopback = /^(127\.|localhost|\[::1\])/.test(registry);
  return `${loopback ? 'http' : 'https'}://${registry}/v2/${name}/${path}`;
}

export async function resolveRegistryImage(repository: string, version: string): Promise<PinnedImage> {
  const { registry } = split(repository);
  const url = registryUrl(repository, `manifests/${encodeURIComponent(version)}`);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'HEAD',
      headers: { Accept: MANIFEST_TYPES },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (error) {
    throw unreachable(`registry ${registry}`, error);
  }
  if (response.status === 404) throw fail('invalid', `image ${repository}:${version} was not found in its registry`);
  if (!response.ok) throw unreachable(`registry ${registry}`, new Error(`HTTP ${response.status} for ${url}`));
  const digest = response.headers.get('docker-content-digest');
  if (!digest || !/^sha256:[a-f0-9]{64}$/.test(digest))
    throw fail('invalid', `registry ${registry} gave no content digest for ${repository}:${version}`);
  return { reference: `${repository}@${digest}`, digest };
}

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

/** The USER of an image's configuration, for this machine's architecture when the image is an index. */
export async function registryImageUser(repository: string, digest: string): Promise<string | undefined> {
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
