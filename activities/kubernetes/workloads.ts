/** What a workload's controller reports about its rollout, read without waiting. */
import type { KubeObject } from './client.js';

export interface WorkloadStatus {
  done: boolean;
  detail: string;
  failure?: string;
}

const num = (value: unknown, fallback = 0): number => (typeof value === 'number' ? value : fallback);

export function workloadStatus(workload: KubeObject): WorkloadStatus {
  const spec = (workload.spec ?? {}) as Record<string, unknown>;
  const status = (workload.status ?? {}) as Record<string, unknown>;
  const observed = num(status.observedGeneration) >= num(workload.metadata.generation, 1);
  const generation = `generation ${num(status.observedGeneration)}/${num(workload.metadata.generation, 1)}`;
  if (workload.kind === 'DaemonSet') {
    const desired = num(status.desiredNumberScheduled);
    const updated = num(status.updatedNumberScheduled);
    const available = num(status.numberAvailable);
    return {
      done: observed && updated === desired && available === desired,
      detail: `${generation}, updated ${updated}/${desired}, available ${available}/${desired}`,
    };
  }
  const desired = num(spec.replicas, 1);
  const updated = num(status.updatedReplicas);
  const ready = num(status.readyReplicas);
  const available = num(status.availableReplicas);
  const total = num(status.replicas);
  const detail = `${generation}, updated ${updated}/${desired}, ready ${ready}/${desired}, available ${available}/${desired}`;
  if (workload.kind === 'StatefulSet') {
    const revisions = status.updateRevision === undefined || status.currentRevision === status.updateRevision;
    return { done: observed && updated === desired && ready === desired && available === desired && revisions, detail };
  }
  const conditions = (status.conditions ?? []) as {
    type?: string;
    status?: string;
    reason?: string;
    message?: string;
  }[];
  const progressing = conditions.find((c) => c.type === 'Progressing');
  // A condition from before the latest change says nothing about it: a restored template would look failed at once.
  const failure =
    observed && progressing?.status === 'False'
      ? `${progressing.reason ?? 'NotProgressing'}: ${progressing.message ?? ''}`
      : undefined;
  return {
    done: observed && updated === desired && total === desired && available === desired,
    detail: total > desired ? `${detail}, ${total - desired} old replicas still running` : detail,
    failure,
  };
}
