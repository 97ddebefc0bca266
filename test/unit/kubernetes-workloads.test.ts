import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import { workloadStatus } from '../../activities/kubernetes/workloads.js';

function workload(kind: string, generation: number, spec: Record<string, unknown>, status: Record<string, unknown>) {
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name: 'web', namespace: 'shop', generation },
    spec,
    status,
  } satisfies KubeObject;
}

const rolledOut = { observedGeneration: 2, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3 };
const deployment = (status: Record<string, unknown>, replicas = 3) => workload('Deployment', 2, { replicas }, status);

const progressDeadlineExceeded = {
  type: 'Progressing',
  status: 'False',
  reason: 'ProgressDeadlineExceeded',
  message: 'ReplicaSet "web-7d4b9c" has timed out progressing.',
};

describe('Deployment rollout status', () => {
  it('is done when the controller saw the latest generation and every replica is updated and available', () => {
    assert.deepEqual(workloadStatus(deployment(rolledOut)), {
      done: true,
      detail: 'generation 2/2, updated 3/3, ready 3/3, available 3/3',
      failure: undefined,
    });
  });

  it('is in progress while the controller has not observed the latest generation', () => {
    const status = workloadStatus(deployment({ ...rolledOut, observedGeneration: 1 }));
    assert.equal(status.done, false);
    assert.equal(status.detail, 'generation 1/2, updated 3/3, ready 3/3, available 3/3');
  });

  it('is in progress while replicas are not yet updated or available', () => {
    const updating = workloadStatus(deployment({ ...rolledOut, updatedReplicas: 1 }));
    assert.equal(updating.done, false);
    assert.equal(updating.detail, 'generation 2/2, updated 1/3, ready 3/3, available 3/3');
    const unavailable = workloadStatus(deployment({ ...rolledOut, availableReplicas: 2 }));
    assert.equal(unavailable.done, false);
    assert.equal(unavailable.detail, 'generation 2/2, updated 3/3, ready 3/3, available 2/3');
  });

  it('is in progress while old replicas still run, and says how many', () => {
    const status = workloadStatus(deployment({ ...rolledOut, replicas: 5 }));
    assert.equal(status.done, false);
    assert.equal(status.detail, 'generation 2/2, updated 3/3, ready 3/3, available 3/3, 2 old replicas still running');
  });

  it('is in progress without any status yet, counting generation 1 when metadata has none', () => {
    const fresh: KubeObject = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: {} };
    assert.deepEqual(workloadStatus(fresh), {
      done: false,
      detail: 'generation 0/1, updated 0/1, ready 0/1, available 0/1',
      failure: undefined,
    });
  });

  it('is in progress while the controller has observed no generation at all, whatever the counts say', () => {
    const unobserved = { replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3 };
    const object: KubeObject = { ...workload('Deployment', 2, { replicas: 3 }, unobserved), metadata: { name: 'web' } };
    assert.equal(workloadStatus(object).done, false);
    assert.equal(workloadStatus(object).detail, 'generation 0/1, updated 3/3, ready 3/3, available 3/3');
  });

  it('expects one replica when the spec does not say', () => {
    const one = { observedGeneration: 2, replicas: 1, updatedReplicas: 1, readyReplicas: 1, availableReplicas: 1 };
    assert.equal(workloadStatus(workload('Deployment', 2, {}, one)).done, true);
    assert.equal(workloadStatus(workload('Deployment', 2, {}, rolledOut)).done, false);
  });

  it('is done for a Deployment scaled to zero once nothing runs', () => {
    assert.equal(workloadStatus(deployment({ observedGeneration: 2 }, 0)).done, true);
    assert.equal(workloadStatus(deployment({ observedGeneration: 2, replicas: 1 }, 0)).done, false);
  });

  it('fails with the reason and message of a ProgressDeadlineExceeded condition', () => {
    const stuck = { ...rolledOut, updatedReplicas: 1, availableReplicas: 2, conditions: [progressDeadlineExceeded] };
    const status = workloadStatus(deployment(stuck));
    assert.equal(status.done, false);
    assert.equal(status.failure, 'ProgressDeadlineExceeded: ReplicaSet "web-7d4b9c" has timed out progressing.');
  });

  it('ignores a failed Progressing condition left from before the latest change', () => {
    const stale = { ...rolledOut, observedGeneration: 1, conditions: [progressDeadlineExceeded] };
    const status = workloadStatus(deployment(stale));
    assert.equal(status.failure, undefined);
    assert.equal(status.done, false);
  });

  it('sees no failure in a Progressing condition that is true, or in other failed conditions', () => {
    const conditions = [
      { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' },
      { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated' },
    ];
    assert.equal(workloadStatus(deployment({ ...rolledOut, updatedReplicas: 1, conditions })).failure, undefined);
  });

  it('names a failed Progressing condition without a reason NotProgressing', () => {
    const conditions = [{ type: 'Progressing', status: 'False' }];
    assert.equal(workloadStatus(deployment({ ...rolledOut, conditions })).failure, 'NotProgressing: ');
  });
});

describe('StatefulSet rollout status', () => {
  const settled = { ...rolledOut, currentRevision: 'web-5f9c', updateRevision: 'web-5f9c' };
  const statefulSet = (status: Record<string, unknown>) => workload('StatefulSet', 2, { replicas: 3 }, status);

  it('is done when every replica is updated, ready and available on the update revision', () => {
    assert.deepEqual(workloadStatus(statefulSet(settled)), {
      done: true,
      detail: 'generation 2/2, updated 3/3, ready 3/3, available 3/3',
    });
  });

  it('is done without revisions in its status', () => {
    assert.equal(workloadStatus(statefulSet(rolledOut)).done, true);
  });

  it('is in progress while the current revision is not the update revision', () => {
    assert.equal(workloadStatus(statefulSet({ ...settled, currentRevision: 'web-4a1b' })).done, false);
  });

  it('is in progress while replicas are not ready, updated or available, or the generation is not observed', () => {
    for (const behind of [
      { readyReplicas: 2 },
      { updatedReplicas: 2 },
      { availableReplicas: 2 },
      { observedGeneration: 1 },
    ])
      assert.equal(workloadStatus(statefulSet({ ...settled, ...behind })).done, false, JSON.stringify(behind));
  });

  it('reports no failure even with a failed Progressing condition, which StatefulSets do not have', () => {
    const status = workloadStatus(
      statefulSet({ ...settled, readyReplicas: 0, conditions: [progressDeadlineExceeded] }),
    );
    assert.equal(status.failure, undefined);
  });
});

describe('DaemonSet rollout status', () => {
  const daemonSet = (status: Record<string, unknown>) => workload('DaemonSet', 4, {}, status);
  const scheduled = { observedGeneration: 4, desiredNumberScheduled: 2, updatedNumberScheduled: 2, numberAvailable: 2 };

  it('is done when every scheduled pod is updated and available', () => {
    assert.deepEqual(workloadStatus(daemonSet(scheduled)), {
      done: true,
      detail: 'generation 4/4, updated 2/2, available 2/2',
    });
  });

  it('is in progress while pods are not updated or available, or the generation is not observed', () => {
    assert.equal(workloadStatus(daemonSet({ ...scheduled, updatedNumberScheduled: 1 })).done, false);
    assert.equal(workloadStatus(daemonSet({ ...scheduled, numberAvailable: 1 })).done, false);
    const unobserved = workloadStatus(daemonSet({ ...scheduled, observedGeneration: 3 }));
    assert.equal(unobserved.done, false);
    assert.equal(unobserved.detail, 'generation 3/4, updated 2/2, available 2/2');
  });

  it('is done with no node to schedule on once the generation is observed', () => {
    assert.equal(workloadStatus(daemonSet({ observedGeneration: 4 })).done, true);
  });
});
