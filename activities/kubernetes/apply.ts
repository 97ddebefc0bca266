/**
 * Applying a release: server-side apply of every object in dependency order, then pruning what the release no
 * longer holds. Each step converges on the same end state, so a retry after a crash midway simply finishes the job.
 * Every object is checked before any is applied: one the release may not take over stops it with nothing changed.
 */
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { ReleaseState } from '../../domain/release.js';
import type { ApplyRequest } from '../../domain/target.js';
import { fail } from '../../domain/failures.js';
import { attemptToken, beforeChange, checkpoint } from '../targets/attempt.js';
import { asRefusal, connect, serverSideApply, type KubeObject } from './client.js';
import { kubernetesFence } from './fence.js';
import { byApplyOrder, describe, idOf, loadManifests, prepare, refOf } from './manifests.js';
import { describeRelease, labelledObjects, liveRelease, readObject } from './objects.js';
import { autoscaledTargets, configurationOf, handOverReplicas } from './autoscaling.js';
import { requireApprovedManifests } from './content.js';
import { adoptionProblem, ownershipAnnotations, recordAppliedUid, removeOwned } from './ownership.js';

/** The object with the annotations that mark it as this release's. */
function owned(target: KubernetesTarget, object: KubeObject): KubeObject {
  const annotations = (object.metadata.annotations as Record<string, string> | undefined) ?? {};
  return {
    ...object,
    metadata: { ...object.metadata, annotations: { ...annotations, ...ownershipAnnotations(target) } },
  };
}

export async function applyRelease({
  target,
  deploymentId,
  version,
  image,
  contentHash,
}: ApplyRequest & { target: KubernetesTarget }): Promise<ReleaseState> {
  const cluster = connect(target);
  const manifests = await loadManifests(target);
  // Read once: what is checked against the approved content is exactly what gets applied.
  if (contentHash) requireApprovedManifests(target, manifests, image, contentHash);
  const prepared = prepare(target, manifests, image, { deploymentId, version });
  if (prepared.imageUses === 0)
    throw fail('invalid', `no container of the release uses the image repository ${target.imageRepository}`);
  const objects = prepared.objects.map((object) => owned(target, object));
  const fence = kubernetesFence(cluster, target, attemptToken());
  await fence.take();
  const existing = new Map<string, KubeObject>();
  const problems: string[] = [];
  for (const object of objects) {
    checkpoint(`reading ${describe(refOf(object))}`);
    const live = await readObject(cluster, refOf(object));
    if (!live) continue;
    existing.set(idOf(refOf(object)), live);
    const problem = adoptionProblem(target, { ...live, apiVersion: object.apiVersion, kind: object.kind });
    if (problem) problems.push(problem);
  }
  if (problems.length) throw fail('invalid', `${problems.join('; ')}; nothing was applied`);
  // A workload an autoscaler of the release scales keeps the replica count the autoscaler gave it.
  const autoscaled = autoscaledTargets(objects);
  for (const object of objects) {
    await beforeChange(fence, `applying ${describe(refOf(object))}`);
    const live = existing.get(idOf(refOf(object)));
    if (live && autoscaled.has(idOf(refOf(object)))) await handOverReplicas(cluster, target, live);
    const body = live ? configurationOf(object, autoscaled) : object;
    // Forced only over an object the release owns: one created by someone else since it was read is a conflict.
    const applied = await serverSideApply(cluster, body, { fieldManager: target.fieldManager, force: !!live }).catch(
      (error: unknown) => {
        throw asRefusal(error, describe(refOf(object)));
      },
    );
    await recordAppliedUid(cluster, { ...applied, apiVersion: object.apiVersion, kind: object.kind });
  }
  const wanted = new Set(objects.map((o) => idOf(refOf(o))));
  const kinds = objects.map((o): [string, string] => [o.apiVersion, o.kind]);
  const stale = (await labelledObjects(cluster, target, kinds)).filter((o) => !wanted.has(idOf(refOf(o))));
  for (const object of stale.map(refOf).sort(byApplyOrder).reverse()) {
    await beforeChange(fence, `pruning ${describe(object)}`);
    const removal = await removeOwned(cluster, target, object);
    if (!removal.removed) checkpoint({ left: `${describe(object)}: ${removal.why}` });
  }
  const live = await liveRelease(cluster, target, objects.map(refOf));
  return describeRelease(target, live);
}
