/**
 * Applying a release: server-side apply of every object in dependency order, then pruning what the release no
 * longer holds. Each step converges on the same end state, so a retry after a crash midway simply finishes the job.
 */
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { ReleaseState } from '../../domain/release.js';
import type { ApplyRequest } from '../../domain/target.js';
import { fail } from '../../domain/failures.js';
import { attemptToken, beforeChange } from '../targets/attempt.js';
import { asRefusal, connect, deleteObject, serverSideApply } from './client.js';
import { kubernetesFence } from './fence.js';
import { byApplyOrder, describe, foreignOwner, idOf, loadManifests, prepare, refOf } from './manifests.js';
import { describeRelease, labelledObjects, liveRelease, readObject } from './objects.js';
import { autoscaledTargets, configurationOf, handOverReplicas } from './autoscaling.js';
import { requireApprovedManifests } from './content.js';

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
  const { objects, imageUses } = prepare(target, manifests, image, { deploymentId, version });
  if (imageUses === 0)
    throw fail('invalid', `no container of the release uses the image repository ${target.imageRepository}`);
  const fence = kubernetesFence(cluster, target, attemptToken());
  await fence.take();
  // A workload an autoscaler of the release scales keeps the replica count the autoscaler gave it.
  const autoscaled = autoscaledTargets(objects);
  for (const object of objects) {
    await beforeChange(fence, `applying ${describe(refOf(object))}`);
    const live = await readObject(cluster, refOf(object));
    const owner = live && foreignOwner(target, live);
    if (owner) throw fail('invalid', `${owner}: a release never applies over another's objects`);
    if (live && autoscaled.has(idOf(refOf(object)))) await handOverReplicas(cluster, target, live);
    const body = live ? configurationOf(object, autoscaled) : object;
    await serverSideApply(cluster, body, { fieldManager: target.fieldManager }).catch((error: unknown) => {
      throw asRefusal(error, describe(refOf(object)));
    });
  }
  const wanted = new Set(objects.map((o) => idOf(refOf(o))));
  const kinds = objects.map((o): [string, string] => [o.apiVersion, o.kind]);
  const stale = (await labelledObjects(cluster, target, kinds)).filter((o) => !wanted.has(idOf(refOf(o))));
  for (const object of stale.map(refOf).sort(byApplyOrder).reverse()) {
    await beforeChange(fence, `pruning ${describe(object)}`);
    await deleteObject(cluster, object);
  }
  const live = await liveRelease(cluster, target, objects.map(refOf));
  return describeRelease(target, live);
}
