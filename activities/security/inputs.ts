/**
 * What the rules inspect, built from what a release would create: for Docker the container the driver would create
 * (the same settings it creates it with), for Kubernetes the manifests after the release image is pinned, and the
 * namespace as the cluster has it.
 */
import type { PinnedImage } from '../../domain/release.js';
import type { ServiceSpec } from '../../domain/spec.js';
import type { DockerTarget, KubernetesTarget } from '../../domain/target.js';
import { activeName } from '../docker/engine.js';
import { DEFAULT_CONTAINER, memoryBytes } from '../docker/hardening.js';
import { connect, isNotFound } from '../kubernetes/client.js';
import { loadManifests, prepare } from '../kubernetes/manifests.js';
import type { DockerSecurityObject, SecurityInput } from './evaluate.js';

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

/** The release's manifests as they would be applied, and the namespace's labels, read from the cluster. */
export async function kubernetesSecurityInput(target: KubernetesTarget, image: PinnedImage): Promise<SecurityInput> {
  const { objects } = prepare(target, await loadManifests(target), image);
  const cluster = connect(target);
  type Namespace = { metadata?: { labels?: Record<string, string> } };
  const namespace: Namespace = await cluster
    .request<Namespace>('GET', `/api/v1/namespaces/${encodeURIComponent(target.namespace)}`)
    .catch((error: unknown) => {
      // A missing namespace is validation's own problem to report; the rules then see one without labels.
      if (isNotFound(error)) return { metadata: {} };
      throw error;
    });
  return {
    kind: 'kubernetes',
    objects,
    namespaceObject: { metadata: { name: target.namespace, labels: namespace.metadata?.labels ?? {} } },
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
