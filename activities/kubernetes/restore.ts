/**
 * Restore and its proof. Restore writes every object of a revision back as it was (ConfigMaps and Secrets included,
 * read from the revision Secret inside the cluster), deletes what the failed release added, and waits for the
 * restored workloads; verification compares the hash of each live object with the revision's.
 */
import type { KubernetesTarget, ReleaseDiff, SnapshotEntry } from '../../domain/kubernetes.js';
import { compareReleases, type ConsistencyReport, type ReleaseState } from '../../domain/release.js';
import { invalid } from '../failures.js';
import {
  KubeApiError,
  connect,
  deleteObject,
  explain,
  serverSideApply,
  type Cluster,
  type KubeObject,
} from './client.js';
import { WORKLOAD_KINDS, byApplyOrder, describe, idOf, loadManifests, refOf, type ObjectRef } from './manifests.js';
import { describeRelease, labelledObjects, liveRelease } from './objects.js';
import { readSnapshot } from './revisions.js';
import { waitForWorkloads, type Progress } from './rollout.js';

const DEFAULT_RESTORE_TIMEOUT_MS = 120_000;
const MAX_DIFF_DEPTH = 8;

export interface KubernetesRestoreRequest {
  target: KubernetesTarget;
  to: ReleaseState;
  /** Accepted for the common target interface: revisions are always kept, the current release was captured already. */
  keepCurrent?: boolean;
  timeoutMs?: number;
  progress?: Progress;
}

/** Nothing deployed needs no revision: every object the service labelled goes, even once its revision is pruned. */
async function entriesOf(cluster: Cluster, target: KubernetesTarget, state: ReleaseState): Promise<SnapshotEntry[]> {
  if (!state.present) return [];
  if (!state.handle) throw invalid('a release to restore or compare needs the handle of its revision');
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
  for (const entry of kept.sort(byApplyOrder)) {
    try {
      await serverSideApply(cluster, entry.object as KubeObject, { fieldManager: target.fieldManager });
    } catch (error) {
      if (error instanceof KubeApiError && error.status >= 400 && error.status < 500)
        throw invalid(`restoring ${describe(entry)}: ${explain(error)}`);
      throw error;
    }
  }
  const kinds = entries.map((e): [string, string] => [e.apiVersion, e.kind]);
  const added = (await labelledObjects(cluster, target, kinds)).map(refOf).filter((r) => !keptIds.has(idOf(r)));
  const doomed = new Map<string, ObjectRef>();
  for (const ref of [...entries.filter((e) => !e.object), ...added]) doomed.set(idOf(ref), ref);
  for (const ref of [...doomed.values()].sort(byApplyOrder).reverse()) await deleteObject(cluster, ref);
  if (to.running) {
    const workloads = kept.filter((e) => WORKLOAD_KINDS.has(e.kind));
    await waitForWorkloads(cluster, workloads, { timeoutMs, progress });
  }
  const live = await liveRelease(cluster, target, entries);
  return { ...describeRelease(target, live), handle: to.handle };
}

const objectName = (ref: ObjectRef): string => `${ref.kind}/${ref.name}`;

/** Data-consistency verification: the live release, object by object, against the revision it must equal. */
export async function verifyRelease(target: KubernetesTarget, expected: ReleaseState): Promise<ConsistencyReport> {
  const cluster = connect(target);
  const entries = await entriesOf(cluster, target, expected);
  const live = await liveRelease(cluster, target, entries);
  const actual = { ...describeRelease(target, live), handle: expected.handle };
  const report = compareReleases(expected, actual);
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

function differingPaths(a: unknown, b: unknown, at: string, depth: number): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const bothObjects = a && b && typeof a === 'object' && typeof b === 'object';
  if (!bothObjects || depth >= MAX_DIFF_DEPTH) return [at || '.'];
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort();
  const path = (key: string): string => (Array.isArray(a) ? `${at}[${key}]` : at ? `${at}.${key}` : key);
  return keys.flatMap((key) => differingPaths(left[key], right[key], path(key), depth + 1));
}

const BOOKKEEPING = /^metadata\.(labels|annotations)\.deploy-agent\.dev\//;

/** Which objects a change adds, removes or changes, and which fields: names only, never values. */
export async function diffRelease(
  target: KubernetesTarget,
  from: ReleaseState,
  to: ReleaseState,
): Promise<ReleaseDiff> {
  const cluster = connect(target);
  const side = async (state: ReleaseState): Promise<SnapshotEntry[]> =>
    !state.present || state.handle
      ? entriesOf(cluster, target, state)
      : (await liveRelease(cluster, target, (await loadManifests(target)).map(refOf))).entries;
  const before = new Map((await side(from)).filter((e) => e.object).map((e) => [idOf(e), e]));
  const after = new Map((await side(to)).filter((e) => e.object).map((e) => [idOf(e), e]));
  const diff: ReleaseDiff = { added: [], removed: [], changed: [], unchanged: 0 };
  for (const [id, entry] of after) if (!before.has(id)) diff.added.push(objectName(entry));
  for (const [id, entry] of before) {
    const next = after.get(id);
    if (!next) diff.removed.push(objectName(entry));
    else if (next.hash === entry.hash) diff.unchanged++;
    else {
      // Key names of a Secret can say more than they should; its changes are reported by top-level field only.
      const depth = entry.kind === 'Secret' ? MAX_DIFF_DEPTH - 1 : 0;
      // Our own bookkeeping (which deployment applied it) changes on every release and says nothing about it.
      const fields = differingPaths(entry.object, next.object, '', depth).filter((f) => !BOOKKEEPING.test(f));
      if (fields.length) diff.changed.push({ object: objectName(entry), fields });
      else diff.unchanged++;
    }
  }
  return diff;
}
