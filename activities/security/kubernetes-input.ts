/** What the rules inspect on Kubernetes: the manifests after the release image is pinned, and the namespace. */
import type { PinnedImage } from '../../domain/release.js';
import type { KubernetesTarget } from '../../domain/target.js';
import { connect, isNotFound } from '../kubernetes/client.js';
import { loadManifests, prepare } from '../kubernetes/manifests.js';
import type { SecurityInput } from './evaluate.js';

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
