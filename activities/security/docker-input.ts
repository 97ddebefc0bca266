/**
 * What the rules inspect on Docker: the container the driver would create, with the same settings it creates it
 * with. Pure, so the CLI checks a spec without loading any target's client.
 */
import type { PinnedImage } from '../../domain/release.js';
import type { ServiceSpec } from '../../domain/spec.js';
import type { DockerTarget } from '../../domain/target.js';
import { DEFAULT_CONTAINER, memoryBytes } from '../docker/hardening.js';
import { activeName } from '../docker/names.js';
import type { DockerSecurityObject } from './evaluate.js';

export interface DockerRelease {
  image: PinnedImage;
  version: string;
  /** The image's own USER, when it could be read. */
  imageUser?: string;
}

export function dockerSecurityObject(
  target: Pick<DockerTarget, 'service' | 'environment' | 'env' | 'container'>,
  release: DockerRelease,
): DockerSecurityObject {
  const container = target.container ?? DEFAULT_CONTAINER;
  return {
    name: activeName(target),
    image: release.image.reference,
    version: release.version,
    user: container.user ?? '',
    imageUser: release.imageUser ?? '',
    privileged: container.privileged,
    capabilities: container.capabilities,
    hostNetwork: container.hostNetwork,
    hostPid: container.hostPid,
    mounts: container.mounts,
    memory: memoryBytes(container.resources.memory),
    cpus: container.resources.cpus ?? 0,
    env: Object.keys(target.env),
  };
}

/** The container a spec alone describes, for checks without a worker (`deploy-agent validate`, the CLI). */
export function dockerObjectOfSpec(spec: ServiceSpec, version = ''): DockerSecurityObject {
  const { user, privileged, capabilities, hostNetwork, hostPid, mounts, resources } = spec.container;
  const target = {
    service: spec.service,
    environment: 'any',
    env: spec.container.env,
    container: { user, privileged, capabilities, hostNetwork, hostPid, mounts, resources },
  };
  return dockerSecurityObject(target, { image: { reference: spec.image.repository, digest: '' }, version });
}
