/**
 * The content of a Kubernetes release and its plan: the hash of the manifests as apply will send them (image pinned,
 * labels added), and what applying them changes against the live objects, by object and field path, never values.
 */
import { fail } from '../../domain/failures.js';
import type { KubernetesTarget, ReleaseDiff } from '../../domain/kubernetes.js';
import type { ReleasePlan } from '../../domain/plan.js';
import type { PinnedImage } from '../../domain/release.js';
import { checkpoint } from '../targets/attempt.js';
import { autoscaledTargets, configurationOf } from './autoscaling.js';
import { asRefusal, connect, serverSideApply, type KubeObject } from './client.js';
import { BOOKKEEPING, MAX_DIFF_DEPTH, differingPaths } from './diff.js';
import { describe, idOf, loadManifests, objectName, prepare, refOf } from './manifests.js';
import { describeRelease, hashObject, liveRelease, managedFields } from './objects.js';

/** sha256 of what apply sends: every object after substitution, without the stamp of the deployment applying it. */
export function manifestContentHash(target: KubernetesTarget, manifests: KubeObject[], image: PinnedImage): string {
  const { objects } = prepare(target, manifests, image);
  return hashObject({ format: 1, kind: 'kubernetes', image: image.digest, objects });
}

/** Apply's guard: the manifests read now must be the ones validated and approved, else nothing is changed. */
export function requireApprovedManifests(
  target: KubernetesTarget,
  manifests: KubeObject[],
  image: PinnedImage,
  approved: string,
): void {
  const now = manifestContentHash(target, manifests, image);
  if (now !== approved)
    throw fail(
      'contentChanged',
      `the release manifests in ${target.manifestsDir} changed after validation and approval (content ${now}, ` +
        `approved ${approved}); nothing was applied: deploy again to validate and approve the new content`,
    );
}

/**
 * An object without our own bookkeeping (which deployment applied it, which version): the plan is computed without
 * the stamp of the deployment, so only the release's own fields are compared.
 */
function withoutBookkeeping(object: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(object);
  const metadata = (copy.metadata ?? {}) as Record<string, unknown>;
  for (const key of ['labels', 'annotations']) {
    const map = metadata[key] as Record<string, unknown> | undefined;
    if (!map) continue;
    for (const name of Object.keys(map)) if (BOOKKEEPING.test(`metadata.${key}.${name}`)) delete map[name];
    if (Object.keys(map).length === 0) delete metadata[key];
  }
  return copy;
}

/** The release's content hash and what it changes against the live objects (server-side dry runs, nothing stored). */
export async function kubernetesPlan(target: KubernetesTarget, image: PinnedImage): Promise<ReleasePlan> {
  const cluster = connect(target);
  const manifests = await loadManifests(target);
  const { objects } = prepare(target, manifests, image);
  const live = await liveRelease(cluster, target, objects.map(refOf));
  const current = new Map(live.entries.flatMap((e) => (e.object ? [[idOf(e), e.object] as const] : [])));
  const autoscaled = autoscaledTargets(objects);
  const diff: ReleaseDiff = { added: [], removed: [], changed: [], unchanged: 0 };
  for (const object of objects) {
    checkpoint(`planning ${describe(refOf(object))}`);
    const before = current.get(idOf(refOf(object)));
    current.delete(idOf(refOf(object)));
    if (!before) {
      diff.added.push(objectName(refOf(object)));
      continue;
    }
    // What the object will be once applied: the server's own merge and defaulting, as apply would get it.
    const body = configurationOf(object, autoscaled);
    const result = await serverSideApply(cluster, body, { fieldManager: target.fieldManager, dryRun: true }).catch(
      (error: unknown) => {
        throw asRefusal(error, describe(refOf(object)));
      },
    );
    const after = configurationOf(
      managedFields({ ...result, apiVersion: object.apiVersion, kind: object.kind }),
      autoscaled,
    );
    // Key names of a Secret can say more than they should; its changes are reported by top-level field only.
    const depth = object.kind === 'Secret' ? MAX_DIFF_DEPTH - 1 : 0;
    const fields = differingPaths(
      withoutBookkeeping(configurationOf(before, autoscaled)),
      withoutBookkeeping(after),
      '',
      depth,
    );
    if (fields.length) diff.changed.push({ object: objectName(refOf(object)), fields });
    else diff.unchanged++;
  }
  // Labelled as the release's but no longer in its manifests: apply prunes them.
  for (const object of live.entries.filter((e) => e.object && current.has(idOf(e))))
    diff.removed.push(objectName(object));
  const imageChanged = describeRelease(target, live).imageDigest !== image.digest;
  return {
    contentHash: manifestContentHash(target, manifests, image),
    imageChanged,
    unchanged: !imageChanged && !diff.added.length && !diff.removed.length && !diff.changed.length,
    objectChanges: diff,
    configChanges: [],
  };
}
