/**
 * The Kubernetes target's fence: a Lease next to the release, whose holder is the attempt allowed to change it.
 * Updates carry the resourceVersion they read, so two attempts taking the fence at once cannot both win.
 */
import type { KubernetesTarget } from '../../domain/target.js';
import { type Fence, type FenceToken, fenceOn } from '../targets/attempt.js';
import { KubeApiError, isNotFound, type Cluster, type KubeObject } from './client.js';

interface Lease extends KubeObject {
  spec?: { holderIdentity?: string; acquireTime?: string; renewTime?: string };
}

export const leaseName = (target: KubernetesTarget): string => `deploy-agent.${target.service}.${target.environment}`;

export function kubernetesFence(cluster: Cluster, target: KubernetesTarget, token: FenceToken): Fence {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(target.namespace)}/leases`;
  const name = leaseName(target);
  // The Lease as last read: an update carries its resourceVersion.
  let lease: Lease | undefined;
  return fenceOn(
    {
      where: `${target.service} in ${target.environment} (namespace ${target.namespace})`,
      async read() {
        try {
          lease = await cluster.request<Lease>('GET', `${collection}/${encodeURIComponent(name)}`);
        } catch (error) {
          if (!isNotFound(error)) throw error;
          lease = undefined;
        }
        return lease?.spec?.holderIdentity;
      },
      async write(holderIdentity) {
        const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
        const spec = { holderIdentity, acquireTime: now, renewTime: now };
        try {
          if (lease)
            await cluster.request('PUT', `${collection}/${encodeURIComponent(name)}`, { body: { ...lease, spec } });
          else
            await cluster.request('POST', collection, {
              body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec },
            });
        } catch (error) {
          // Someone else wrote the Lease since we read it: the next read says who holds it.
          if (!(error instanceof KubeApiError && error.status === 409)) throw error;
        }
      },
    },
    token,
  );
}
