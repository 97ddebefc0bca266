/**
 * The Kubernetes target's fence: a Lease next to the release, whose holder is the attempt allowed to change it.
 * Updates carry the resourceVersion they read, so two attempts taking the fence at once cannot both win.
 */
import type { KubernetesTarget } from '../../domain/target.js';
import {
  decodeToken,
  encodeToken,
  type Fence,
  type FenceToken,
  sameToken,
  superseded,
  supersedes,
} from '../targets/attempt.js';
import { KubeApiError, isNotFound, type Cluster, type KubeObject } from './client.js';

const TAKE_ATTEMPTS = 5;

interface Lease extends KubeObject {
  spec?: { holderIdentity?: string; acquireTime?: string; renewTime?: string };
}

export const leaseName = (target: KubernetesTarget): string => `deploy-agent.${target.service}.${target.environment}`;

export function kubernetesFence(cluster: Cluster, target: KubernetesTarget, token: FenceToken): Fence {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${target.namespace}/leases`;
  const name = leaseName(target);
  const where = `${target.service} in ${target.environment} (namespace ${target.namespace})`;
  const read = async (): Promise<Lease | undefined> => {
    try {
      return await cluster.request<Lease>('GET', `${collection}/${name}`);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  };
  const lost = (error: unknown) => error instanceof KubeApiError && error.status === 409;
  return {
    async take() {
      for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
        const lease = await read();
        const holder = decodeToken(lease?.spec?.holderIdentity);
        if (holder && sameToken(holder, token)) return;
        if (holder && !supersedes(token, holder)) throw superseded(where, holder);
        const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
        const spec = { holderIdentity: encodeToken(token), acquireTime: now, renewTime: now };
        try {
          if (lease) await cluster.request('PUT', `${collection}/${name}`, { body: { ...lease, spec } });
          else
            await cluster.request('POST', collection, {
              body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec },
            });
          return;
        } catch (error) {
          // Someone else wrote the Lease since we read it: read again and decide again.
          if (!lost(error)) throw error;
        }
      }
      throw superseded(where, decodeToken((await read())?.spec?.holderIdentity));
    },
    async check() {
      const holder = decodeToken((await read())?.spec?.holderIdentity);
      if (!holder || !sameToken(holder, token)) throw superseded(where, holder);
    },
  };
}
