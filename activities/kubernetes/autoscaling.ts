/**
 * Workloads an autoscaler of the release scales: their replica count is the autoscaler's, so a release neither
 * applies, hashes nor compares it, and hands the field over before it stops applying it.
 */
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import { KubeApiError, asRefusal, serverSideApply, type Cluster, type KubeObject } from './client.js';
import { describe, idOf, refOf } from './manifests.js';

/**
 * The objects whose replica count an autoscaler of the release sets, by id: the `spec.scaleTargetRef` of each
 * HorizontalPodAutoscaler among `objects`, in the autoscaler's namespace. A reference without apiVersion names the
 * core group, as the HPA controller reads it (and there it scales nothing of a release).
 */
export function autoscaledTargets(objects: Iterable<Record<string, unknown> | undefined>): Set<string> {
  const ids = new Set<string>();
  for (const object of objects) {
    if (object?.kind !== 'HorizontalPodAutoscaler') continue;
    const metadata = object.metadata as { namespace?: unknown } | undefined;
    const ref = (object.spec as { scaleTargetRef?: Record<string, unknown> } | undefined)?.scaleTargetRef;
    if (typeof ref?.kind !== 'string' || typeof ref.name !== 'string') continue;
    ids.add(
      idOf({
        apiVersion: typeof ref.apiVersion === 'string' ? ref.apiVersion : '',
        kind: ref.kind,
        namespace: typeof metadata?.namespace === 'string' ? metadata.namespace : '',
        name: ref.name,
      }),
    );
  }
  return ids;
}

/**
 * The configuration of an object of the release, from its managed fields: the replica count of a workload an
 * autoscaler of the release scales is the autoscaler's, not the release's, so it is neither hashed, compared nor
 * written back. Returns a new object; the one given is left as it is.
 */
export function configurationOf(managed: Record<string, unknown>, autoscaled: ReadonlySet<string>): KubeObject {
  const object = managed as KubeObject;
  const spec = object.spec;
  if (!autoscaled.has(idOf(refOf(object))) || !spec || typeof spec !== 'object' || !('replicas' in spec)) return object;
  const rest: Record<string, unknown> = { ...spec };
  delete rest.replicas;
  return { ...object, spec: rest };
}

/**
 * Before a deploy or a restore applies an autoscaled workload without its replica count. Server-side apply removes a field its
 * manager stops applying unless another manager holds it too: when this one is its only holder (a release applied
 * replicas and the autoscaler has not scaled since), leaving them out would reset the workload to one replica. So a
 * manager of its own first applies the live count, without force, and holds the field along with it: the hand-over
 * to an autoscaler that Kubernetes documents for server-side apply. The autoscaler takes the field over the next
 * time it scales. A conflict means the count changed since it was read, so whoever changed it holds it already.
 */
export async function handOverReplicas(cluster: Cluster, target: KubernetesTarget, live: KubeObject): Promise<void> {
  const replicas = (live.spec as { replicas?: unknown } | undefined)?.replicas;
  if (typeof replicas !== 'number' || !appliesReplicas(live, target.fieldManager)) return;
  const { apiVersion, kind, metadata } = live;
  const holder = {
    apiVersion,
    kind,
    metadata: { name: metadata.name, namespace: metadata.namespace },
    spec: { replicas },
  };
  await serverSideApply(cluster, holder, { fieldManager: handOverManager(target), force: false }).catch(
    (error: unknown) => {
      if (error instanceof KubeApiError && error.status === 409) return;
      throw asRefusal(error, `handing the replicas of ${describe(refOf(live))} over to its autoscaler`);
    },
  );
}

const handOverManager = (target: KubernetesTarget): string => `${target.fieldManager}-handover`;

/** Whether the manager's applied configuration holds the object's `spec.replicas`. */
function appliesReplicas(live: KubeObject, manager: string): boolean {
  const managed = (live.metadata.managedFields ?? []) as {
    manager?: string;
    operation?: string;
    subresource?: string;
    fieldsV1?: { 'f:spec'?: Record<string, unknown> };
  }[];
  return managed.some(
    (m) => m.manager === manager && m.operation === 'Apply' && !m.subresource && m.fieldsV1?.['f:spec']?.['f:replicas'],
  );
}
