/**
 * Restore and its proof. Restore writes every object of a revision back as it was (ConfigMaps and Secrets included,
 * read from the revision Secret inside the cluster), deletes what the failed release added, and waits for the
 * restored workloads; verification compares the configuration of each live object with the revision's, and the
 * release's readiness as a check of its own. The replica count of a workload an autoscaler of the release scales is
 * the autoscaler's: restore leaves it as it is and verification does not compare it.
 *
 * Nothing is restored from a revision that cannot be trusted: its HMAC must verify and equal the one the history
 * recorded, and every entry must be of the environment's namespace and a restorable kind (revisions.ts,
 * restorable.ts). Restore writes only objects the release owns (or that are gone), and removes only what
 * ownership.ts allows: never a PersistentVolumeClaim or an object annotated to be kept, always by UID.
 */
import type { KubernetesTarget, SnapshotEntry } from '../../domain/kubernetes.js';
import { compareReleases, type ConsistencyReport, RELEASE_FIELDS, type ReleaseState } from '../../domain/release.js';
import { fail } from '../../domain/failures.js';
import { asRefusal, connect, serverSideApply, type Cluster, type KubeObject } from './client.js';
import { WORKLOAD_KINDS, byApplyOrder, describe, idOf, objectName, refOf, type ObjectRef } from './manifests.js';
import { autoscaledTargets, configurationOf, handOverReplicas } from './autoscaling.js';
import {
  configuredEntries,
  describeRelease,
  hashObject,
  labelledObjects,
  liveRelease,
  projectOnto,
  readObject,
  releaseHash,
  type LiveRelease,
} from './objects.js';
import { findSnapshot, readSnapshot } from './revisions.js';
import { entryProblem } from './restorable.js';
import { adoptionProblem, keptBecause, recordAppliedUid, removeOwned } from './ownership.js';
import { kubernetesFence } from './fence.js';
import { attemptToken, beforeChange, checkpoint } from '../targets/attempt.js';
import { waitForWorkloads, type Progress } from './rollout.js';
import { workloadStatus } from './workloads.js';

const DEFAULT_RESTORE_TIMEOUT_MS = 120_000;

export interface KubernetesRestoreRequest {
  target: KubernetesTarget;
  to: ReleaseState;
  timeoutMs?: number;
  progress?: Progress;
}

/**
 * The objects of a revision, as configurations (asConfigured in revisions.ts). A first deploy's revision holds only
 * absent entries, one per object the release was to create: restore deletes exactly those. Without a revision
 * (pruned, or never taken), nothing deployed means every object the service labelled goes. A revision that fails its
 * integrity check, or names anything restore may not write, is refused as a whole.
 */
export async function entriesOf(
  cluster: Cluster,
  target: KubernetesTarget,
  state: ReleaseState,
): Promise<SnapshotEntry[]> {
  if (state.present && !state.handle)
    throw fail('invalid', 'a release to restore or compare needs the handle of its revision');
  if (!state.handle) return [];
  const snapshot = state.present
    ? await readSnapshot(cluster, target, state.handle, state.integrity)
    : await findSnapshot(cluster, target, state.handle, state.integrity);
  const entries = snapshot?.entries ?? [];
  const problems = entries.flatMap((entry) => entryProblem(target, entry) ?? []);
  if (problems.length)
    throw fail('invalid', `revision ${state.handle} is refused: ${problems.join('; ')}; nothing was restored from it`);
  return entries;
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
  // What the revision's own autoscalers scale: once it is restored, they are the autoscalers that run.
  const autoscaled = autoscaledTargets(kept.map((e) => e.object));
  const fence = kubernetesFence(cluster, target, attemptToken());
  await fence.take();
  for (const entry of kept.sort(byApplyOrder)) {
    await beforeChange(fence, `restoring ${describe(entry)}`);
    const live = await readObject(cluster, entry);
    // An object the release does not own now (apply refused to take it over) was not changed: it is left as it is.
    if (live && adoptionProblem(target, { ...live, apiVersion: entry.apiVersion, kind: entry.kind })) continue;
    if (live && autoscaled.has(idOf(entry))) await handOverReplicas(cluster, target, live);
    const object = configurationOf(entry.object as KubeObject, autoscaled);
    const applied = await serverSideApply(cluster, object, { fieldManager: target.fieldManager }).catch(
      (error: unknown) => {
        throw asRefusal(error, `restoring ${describe(entry)}`);
      },
    );
    await recordAppliedUid(cluster, { ...applied, apiVersion: entry.apiVersion, kind: entry.kind });
  }
  const kinds = entries.map((e): [string, string] => [e.apiVersion, e.kind]);
  const added = (await labelledObjects(cluster, target, kinds)).map(refOf).filter((r) => !keptIds.has(idOf(r)));
  const doomed = new Map<string, ObjectRef>();
  for (const ref of [...entries.filter((e) => !e.object), ...added]) doomed.set(idOf(ref), ref);
  for (const ref of [...doomed.values()].sort(byApplyOrder).reverse()) {
    await beforeChange(fence, `removing ${describe(ref)}`);
    const removal = await removeOwned(cluster, target, ref);
    if (!removal.removed) checkpoint({ left: `${describe(ref)}: ${removal.why}` });
  }
  if (to.running) {
    const workloads = kept.filter((e) => WORKLOAD_KINDS.has(e.kind));
    await waitForWorkloads(cluster, workloads, { timeoutMs, progress });
  }
  const live = await liveRelease(cluster, target, entries);
  return { ...describeRelease(target, live), handle: to.handle };
}

/** The live workloads that are not ready, each with what its controller reports. */
function unready(live: LiveRelease): string[] {
  return live.raw
    .filter((o) => WORKLOAD_KINDS.has(o.kind))
    .map((o) => ({ name: objectName(refOf(o)), status: workloadStatus(o) }))
    .filter(({ status }) => !status.done)
    .map(({ name, status }) => `${name}: ${status.detail}`);
}

/**
 * Data-consistency verification: the live release, object by object, against the revision it must equal. Every check
 * compares a value read from the cluster now with one derived from the revision, so each of them can fail:
 * `present`, `imageDigest` and `running` from the live objects, `configHash` and one check per object from their
 * configurations. The handle is left out: it names the revision, which the live objects do not carry. Readiness is
 * `running` alone; an object's check compares its configuration, which holds no status.
 */
export async function verifyRelease(target: KubernetesTarget, expected: ReleaseState): Promise<ConsistencyReport> {
  const cluster = connect(target);
  const entries = await entriesOf(cluster, target, expected);
  const { live, kept } = withoutKept(await liveRelease(cluster, target, entries), entries);
  // Both sides through one projection: an autoscaler in the revision or among the live objects leaves its workload's
  // replica count out of both. Where only one side holds it, that autoscaler's own check fails. The expected hashes
  // are computed here from the revision's objects, never taken as stored: a revision stored before autoscaled replica
  // counts were left out holds hashes that include them.
  const autoscaled = autoscaledTargets([...entries, ...live.entries].map((e) => e.object));
  const wanted = new Map(configuredEntries(entries, autoscaled).map((e) => [idOf(e), e]));
  // Each live object is compared on what the revision holds of it: fields other managers added since are theirs.
  const found = new Map(
    configuredEntries(live.entries, autoscaled).map((e): [string, SnapshotEntry] => {
      const written = wanted.get(idOf(e))?.object;
      return [idOf(e), written && e.object ? { ...e, hash: hashObject(projectOnto(e.object, written)) } : e];
    }),
  );
  const actual = describeRelease(target, live);
  const report = compareReleases(
    { ...expected, configHash: releaseHash([...wanted.values()]) },
    { ...actual, configHash: releaseHash([...found.values()]) },
    RELEASE_FIELDS.filter((field) => field !== 'handle'),
  );
  const readiness = report.checks.find((c) => c.field === 'running' && !c.equal);
  const waiting = unready(live);
  if (readiness && waiting.length) readiness.actual = `${readiness.actual} (${waiting.join('; ')})`;
  // Left in place on purpose (a PersistentVolumeClaim, an object annotated to be kept): named, not a difference.
  const keptWhy = new Map(
    kept.map(({ ref, why }): [string, { ref: ObjectRef; why: string }] => [idOf(ref), { ref, why }]),
  );
  const ids = [...new Set([...wanted.keys(), ...found.keys(), ...keptWhy.keys()])].sort();
  const checks = ids.map((id) => {
    const ref = wanted.get(id) ?? found.get(id) ?? (keptWhy.get(id) as { ref: ObjectRef }).ref;
    const want = wanted.get(id)?.hash ?? 'absent';
    const leftInPlace = keptWhy.get(id);
    if (leftInPlace) return { field: objectName(ref), expected: want, actual: `kept: ${leftInPlace.why}`, equal: true };
    const have = found.get(id)?.hash ?? 'absent';
    return { field: objectName(ref), expected: want, actual: have, equal: want === have };
  });
  return { consistent: report.consistent && checks.every((c) => c.equal), checks: [...report.checks, ...checks] };
}

/**
 * The live release less the objects restore leaves in place on purpose where the revision has none of them (a
 * PersistentVolumeClaim or an object annotated to be kept that the replaced release added): they stay, and are not
 * the release's any more.
 */
function withoutKept(live: LiveRelease, entries: SnapshotEntry[]) {
  const stored = new Set(entries.filter((e) => e.object).map(idOf));
  const kept: { ref: ObjectRef; why: string }[] = [];
  const keptIds = new Set<string>();
  for (const object of live.raw) {
    const why = keptBecause(object);
    const id = idOf(refOf(object));
    if (why && !stored.has(id)) {
      kept.push({ ref: refOf(object), why });
      keptIds.add(id);
    }
  }
  return {
    live: {
      raw: live.raw.filter((o) => !keptIds.has(idOf(refOf(o)))),
      entries: live.entries.filter((e) => !keptIds.has(idOf(e))),
    },
    kept,
  };
}
