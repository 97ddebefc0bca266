/**
 * Applying a release: server-side apply of every object in dependency order, then pruning what the release no
 * longer holds. Each step converges on the same end state, so a retry after a crash midway simply finishes the job.
 */
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage, ReleaseState } from '../../domain/release.js';
import { invalid } from '../failures.js';
import { KubeApiError, connect, deleteObject, explain, serverSideApply } from './client.js';
import { byApplyOrder, describe, idOf, loadManifests, prepare, refOf } from './manifests.js';
import { describeRelease, labelledObjects, liveRelease } from './objects.js';

export interface KubernetesApplyRequest {
  target: KubernetesTarget;
  deploymentId: string;
  version: string;
  image: PinnedImage;
}

export async function applyRelease({
  target,
  deploymentId,
  version,
  image,
}: KubernetesApplyRequest): Promise<ReleaseState> {
  const cluster = connect(target);
  const manifests = await loadManifests(target);
  const { objects, imageUses } = prepare(target, manifests, image, { deploymentId, version });
  if (imageUses === 0) throw invalid(`no container of the release uses the image repository ${target.imageRepository}`);
  for (const object of objects) {
    try {
      await serverSideApply(cluster, object, { fieldManager: target.fieldManager });
    } catch (error) {
      // The server refusing an object is the release's fault: retrying cannot help.
      if (error instanceof KubeApiError && error.status >= 400 && error.status < 500)
        throw invalid(`${describe(refOf(object))}: ${explain(error)}`);
      throw error;
    }
  }
  const wanted = new Set(objects.map((o) => idOf(refOf(o))));
  const kinds = objects.map((o): [string, string] => [o.apiVersion, o.kind]);
  const stale = (await labelledObjects(cluster, target, kinds)).filter((o) => !wanted.has(idOf(refOf(o))));
  for (const object of stale.map(refOf).sort(byApplyOrder).reverse()) await deleteObject(cluster, object);
  const live = await liveRelease(cluster, target, objects.map(refOf));
  return describeRelease(target, live);
}
