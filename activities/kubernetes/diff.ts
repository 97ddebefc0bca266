/** What a change does to a release, object by object: names and field paths only, never values. */
import type { KubernetesTarget, ReleaseDiff, SnapshotEntry } from '../../domain/kubernetes.js';
import type { ReleaseState } from '../../domain/release.js';
import { connect } from './client.js';
import { idOf, loadManifests, objectName, refOf } from './manifests.js';
import { liveRelease } from './objects.js';
import { entriesOf } from './restore.js';

export const MAX_DIFF_DEPTH = 8;

/** The paths (`spec.template.spec.containers[0].image`) at which two values differ, to `maxDepth` levels. */
export function differingPaths(a: unknown, b: unknown, at = '', depth = 0): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const bothObjects = a && b && typeof a === 'object' && typeof b === 'object';
  if (!bothObjects || depth >= MAX_DIFF_DEPTH) return [at || '.'];
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(left), ...Object.keys(right)])].sort();
  const path = (key: string): string => (Array.isArray(a) ? `${at}[${key}]` : at ? `${at}.${key}` : key);
  return keys.flatMap((key) => differingPaths(left[key], right[key], path(key), depth + 1));
}

/** Our own bookkeeping (which deployment applied it): it changes on every release and says nothing about it. */
export const BOOKKEEPING = /^metadata\.(labels|annotations)\.deploy-agent\.dev\//;

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
