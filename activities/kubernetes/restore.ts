/**
 * Restore and its proof. Restore writes every object of a revision back as it was (ConfigMaps and Secrets included,
 * read from the revision Secret inside the cluster), deletes what the failed release added, and waits for the
 * restored workloads; verification compares the hash of each live object with the revision's.
 */
import type { KubernetesTarget, SnapshotEntry } from '../../domain/kubernetes.js';
import { compareReleases, type ConsistencyReport, RELEASE_FIELDS, type ReleaseState } from '../../domain/release.js';
import { fail } from '../../domain/failures.js';
import { asRefusal, connect, deleteObject, serverSideApply, type Cluster, type KubeObject } from './client.js';
import { WORKLOAD_KINDS, byApplyOrder, describe, idOf, objectName, refOf, type ObjectRef } from './manifests.js';
import { describeRelease, labelledObjects, liveRelease } from './objects.js';
import { findSnapshot, readSnapshot } from './revisions.js';
import { kubernetesFence } from './fence.js';
import { attemptToken, beforeChange } from '../targets/attempt.js';
import { waitForWorkloads, type Progress } from './rollout.js';

const DEFAULT_RESTORE_TIMEOUT_MS = 120_000;

export interface KubernetesRestoreRequest {
  target: KubernetesTarget;
  to: ReleaseState;
  timeoutMs?: number;
  progress?: Progress;
}

/**
 * The objects of a revision. A first deploy's revision holds only absent entries, one per object the release was to
 * create, whatever its kind: restore deletes exactly those. Without a revision (pruned, or never taken), nothing
 * deployed means every object the service labelled goes.
 */
export async function entriesOf(
  cluster: Cluster,
  target: KubernetesTarget,
  state: ReleaseState,
): Promise<SnapshotEntry[]> {
  if (!state.present) return state.handle ? ((await findSnapshot(cluster, target, state.handle))?.entries ?? []) : [];
  if (!state.handle) throw fail('invalid', 'a release to restore or compare needs the handle of its revision');
  return (await readSnapshot(cluster, target, state.handle)).entries;
}

/** Idempotent: converges on the revision of `to`; with `to.present` false, on nothing of this service at all. */
export async function restoreRelease({
  target,
  to,
  timeoutMs = DEFAULT_RESTORE_TIMEOUT_MS,
  progress,
}: KubernetesRestoreRequest): Promise<ReleaseState> {
  const cluster = connect(target);
  const entries = await entriesOf(cluster, target, to);
  const kept = entries.filter((e) => e.object);
  const keptIds = new Set(kept.map(idOf));
  const fence = kubernetesFence(cluster, target, attemptToken());
  await fence.take();
  for (const entry of kept.sort(byApplyOrder)) {
    await beforeChange(fence, `restoring ${describe(entry)}`);
    await serverSideApply(cluster, entry.object as KubeObject, { fieldManager: target.fieldManager }).catch(
      (error: unknown) => {
        throw asRefusal(error, `restoring ${describe(entry)}`);
      },
    );
  }
  const kinds = entries.map((e): [string, string] => [e.apiVersion, e.kind]);
  const added = (await labelledObjects(cluster, target, kinds)).map(refOf).filter((r) => !keptIds.has(idOf(r)));
  const doomed = new Map<string, ObjectRef>();
  for (const ref of [...entries.filter((e) => !e.object), ...added]) doomed.set(idOf(ref), ref);
  for (const ref of [...doomed.values()].sort(byApplyOrder).reverse()) {
    await beforeChange(fence, `removing ${describe(ref)}`);
    await deleteObject(cluster, ref);
  }
  if (to.running) {
    const workloads = kept.filter((e) => WORKLOAD_KINDS.has(e.kind));
    await waitForWorkloads(cluster, workloads, { timeoutMs, progress });
  }
  const live = await liveRelease(cluster, target, entries);
  return { ...describeRelease(target, live), handle: to.handle };
}

/** Data-consistency verification: the live release, object by object, against the revision it must equal. */
export async function verifyRelease(target: KubernetesTarget, expected: ReleaseState): Promise<ConsistencyReport> {
  const cluster = connect(target);
  const entries = await entriesOf(cluster, target, expected);
  const live = await liveRelease(cluster, target, entries);
  // The handle names the revision, which the live objects do not carry: each object's hash is compared instead.
  const report = compareReleases(
    expected,
    describeRelease(target, live),
    RELEASE_FIELDS.filter((field) => field !== 'handle'),
  );
  const wanted = new Map(entries.map((e) => [idOf(e), e]));
  const found = new Map(live.entries.map((e) => [idOf(e), e]));
  const ids = [...new Set([...wanted.keys(), ...found.keys()])].sort();
  const checks = ids.map((id) => {
    const ref = (wanted.get(id) ?? found.get(id)) as SnapshotEntry;
    const want = wanted.get(id)?.hash ?? 'absent';
    const have = found.get(id)?.hash ?? 'absent';
    return { field: objectName(ref), expected: want, actual: have, equal: want === have };
  });
  return { consistent: report.consistent && checks.every((c) => c.equal), checks: [...report.checks, ...checks] };
}
