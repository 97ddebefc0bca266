/**
 * Which live objects a release may change and delete. Like Helm's `meta.helm.sh/release-name`, every object a
 * release applies carries an ownership annotation naming its service and environment; an existing object without it
 * is not taken over unless the policy says so (`kubernetes.adoptExisting`). Deletion is narrower still: never a
 * PersistentVolumeClaim (it holds data), never an object annotated to be kept, and only the very object the release
 * applied, by the UID recorded on it when it was applied.
 */
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import { KubeApiError, collectionPath, isNotFound, type Cluster, type KubeObject } from './client.js';
import { LABEL, MANAGER, describe, foreignOwner, refOf, type ObjectRef } from './manifests.js';
import { segment } from './names.js';

export const OWNERSHIP = {
  /** `<service>.<environment>`: the release that owns the object (both are DNS labels, so the dot is unambiguous). */
  owner: 'deploy-agent.dev/owner',
  /** The object's UID when the release applied it: a same-named object recreated by someone else has another. */
  uid: 'deploy-agent.dev/owner-uid',
  /** `keep`: prune and restore never delete the object (Helm's `helm.sh/resource-policy: keep`). */
  resourcePolicy: 'deploy-agent.dev/resource-policy',
} as const;

const NEVER_DELETED_KINDS = new Set(['PersistentVolumeClaim']);

export const ownerOf = (target: KubernetesTarget): string => `${target.service}.${target.environment}`;

const annotationsOf = (object: KubeObject): Record<string, string> =>
  (object.metadata.annotations as Record<string, string> | undefined) ?? {};
const labelsOf = (object: KubeObject): Record<string, string> =>
  (object.metadata.labels as Record<string, string> | undefined) ?? {};

/**
 * Whether the release owns a live object: its ownership annotation names this service and environment, or, for
 * objects applied before the annotation existed, it carries no owner annotation and the labels earlier releases set.
 */
export function ownedBy(target: KubernetesTarget, live: KubeObject): boolean {
  const owner = annotationsOf(live)[OWNERSHIP.owner];
  if (owner !== undefined) return owner === ownerOf(target);
  const labels = labelsOf(live);
  return (
    labels[LABEL.managedBy] === MANAGER &&
    labels[LABEL.service] === target.service &&
    labels[LABEL.environment] === target.environment
  );
}

/**
 * Why apply must not write over a live object, or undefined when it may: another release's object never; one nobody
 * owns only when the policy allows adopting.
 */
export function adoptionProblem(target: KubernetesTarget, live: KubeObject): string | undefined {
  const foreign = foreignOwner(target, live);
  if (foreign) return `${foreign}: a release never applies over another's objects`;
  const owner = annotationsOf(live)[OWNERSHIP.owner];
  if (owner !== undefined && owner !== ownerOf(target))
    return `${describe(refOf(live))} belongs to ${owner} (${OWNERSHIP.owner}): a release never applies over another's objects`;
  if (ownedBy(target, live) || target.adoptExisting) return undefined;
  return (
    `${describe(refOf(live))} exists and no release of ${target.service} in ${target.environment} owns it ` +
    `(no ${OWNERSHIP.owner} annotation): it is not taken over; remove it, annotate it ` +
    `${OWNERSHIP.owner}=${ownerOf(target)}, or allow kubernetes.adoptExisting for ${target.environment}`
  );
}

/** Ownership annotations for an object about to be applied. */
export function ownershipAnnotations(target: KubernetesTarget): Record<string, string> {
  return { [OWNERSHIP.owner]: ownerOf(target) };
}

/** Why an object is never deleted by prune or restore, or undefined. */
export function keptBecause(live: KubeObject): string | undefined {
  if (NEVER_DELETED_KINDS.has(live.kind)) return `a ${live.kind} holds data and is never deleted`;
  if (annotationsOf(live)[OWNERSHIP.resourcePolicy] === 'keep') return `annotated ${OWNERSHIP.resourcePolicy}=keep`;
  return undefined;
}

/**
 * Records the UID the object has now that the release applied it, when it is not recorded yet (created now, or
 * recreated by this release). A merge patch of one annotation: the object's configuration is not touched.
 */
export async function recordAppliedUid(cluster: Cluster, applied: KubeObject): Promise<void> {
  const uid = applied.metadata.uid as string | undefined;
  if (!uid || annotationsOf(applied)[OWNERSHIP.uid] === uid) return;
  const collection = await collectionPath(cluster, applied.apiVersion, applied.kind, applied.metadata.namespace ?? '');
  if (!collection) return;
  await cluster.request('PATCH', `${collection}/${segment(applied.metadata.name)}`, {
    // The UID in the patch is a precondition: an object recreated since it was applied is not annotated.
    body: { metadata: { uid, annotations: { [OWNERSHIP.uid]: uid } } },
    contentType: 'application/merge-patch+json',
    query: { fieldManager: 'deploy-agent-ownership' },
  });
}

export type Removal = { removed: true } | { removed: false; why: string };

/**
 * Deletes an object of the release: only if the release owns it, it is not one to keep, and it is the object the
 * release applied (the UID recorded on it is its own); the delete carries that UID as a precondition, so an object
 * recreated in the meantime is never deleted. Already gone counts as removed.
 */
export async function removeOwned(cluster: Cluster, target: KubernetesTarget, ref: ObjectRef): Promise<Removal> {
  const collection = await collectionPath(cluster, ref.apiVersion, ref.kind, ref.namespace);
  if (!collection) return { removed: true };
  const path = `${collection}/${segment(ref.name)}`;
  let live: KubeObject;
  try {
    live = { ...(await cluster.request<KubeObject>('GET', path)), apiVersion: ref.apiVersion, kind: ref.kind };
  } catch (error) {
    if (isNotFound(error)) return { removed: true };
    throw error;
  }
  const kept = keptBecause(live);
  if (kept) return { removed: false, why: kept };
  if (!ownedBy(target, live)) return { removed: false, why: `not owned by ${ownerOf(target)}` };
  const uid = live.metadata.uid as string | undefined;
  const recorded = annotationsOf(live)[OWNERSHIP.uid];
  if (recorded !== undefined && recorded !== uid)
    return { removed: false, why: `recreated by someone else (UID ${uid ?? '?'}, the release applied ${recorded})` };
  try {
    await cluster.request('DELETE', path, {
      body: { propagationPolicy: 'Background', preconditions: { uid: recorded ?? uid } },
    });
    return { removed: true };
  } catch (error) {
    if (isNotFound(error)) return { removed: true };
    // The UID precondition failed: the object was deleted and recreated between the read and the delete.
    if (error instanceof KubeApiError && error.status === 409)
      return { removed: false, why: 'recreated while it was being removed' };
    throw error;
  }
}
