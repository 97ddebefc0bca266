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
  const { registry, name } = split(repository);
  const loopback = /^(127\.|localhost|\[::1\])/.test(registry);
  const url = `${loopback ? 'http' : 'https'}://${registry}/v2/${name}/manifests/${encodeURIComponent(version)}`;
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
