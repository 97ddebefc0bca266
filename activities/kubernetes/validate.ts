/**
 * Validation against the cluster, changing nothing: whether it can take the release (version, served kinds,
 * namespace, quotas, dependencies) and what the server itself says about each object (server-side dry run).
 */
import { isFailureOf, messageOf } from '../../domain/failures.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage } from '../../domain/release.js';
import type { EnvironmentReport } from '../../domain/target.js';
import { connect, explain, isNotFound, isRefusal, serverSideApply, type Cluster, type KubeObject } from './client.js';
import { WORKLOAD_KINDS, describe, loadManifests, prepare, refOf } from './manifests.js';
import { adoptionProblem } from './ownership.js';
import { entryProblem } from './restorable.js';
import { describeRelease, liveRelease } from './objects.js';
import { quotaProblems, releaseAmounts } from './quota.js';
import { workloadStatus } from './workloads.js';

const SUPPORTED_MINORS = { min: 33, max: 35 } as const;
// The image does not matter for what validation checks; a stand-in keeps prepare() honest about substitution.
const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;

export interface KubernetesEnvironmentReport extends EnvironmentReport {
  serverVersion: string;
}

async function list(cluster: Cluster, path: string, labelSelector?: string): Promise<KubeObject[]> {
  const result = await cluster.request<{ items?: KubeObject[] }>('GET', path, { query: { labelSelector } });
  return result.items ?? [];
}

async function dependencyProblem(cluster: Cluster, namespace: string, dependency: string): Promise<string | undefined> {
  const apps = `/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}`;
  let workloads: KubeObject[] = [];
  try {
    const named = await cluster.request<KubeObject>('GET', `${apps}/deployments/${encodeURIComponent(dependency)}`);
    workloads = [{ ...named, apiVersion: 'apps/v1', kind: 'Deployment' }];
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  if (workloads.length === 0)
    for (const kind of ['Deployment', 'StatefulSet', 'DaemonSet']) {
      const items = await list(cluster, `${apps}/${kind.toLowerCase()}s`, `app.kubernetes.io/name=${dependency}`);
      workloads.push(...items.map((w) => ({ ...w, apiVersion: 'apps/v1', kind })));
    }
  if (workloads.length === 0)
    return `dependency ${dependency}: no Deployment ${dependency} and no workload labelled app.kubernetes.io/name=${dependency} in namespace ${namespace}`;
  const unavailable = workloads.filter((w) => !workloadStatus(w).done);
  if (unavailable.length === 0) return undefined;
  return `dependency ${dependency} is not available: ${unavailable.map((w) => `${describe(refOf(w))} (${workloadStatus(w).detail})`).join('; ')}`;
}

/** Environment compatibility and dependency verification in one look at the cluster. */
export async function inspectKubernetesEnvironment(
  target: KubernetesTarget,
  dependsOn: string[],
): Promise<KubernetesEnvironmentReport> {
  const cluster = connect(target);
  const manifests = await loadManifests(target);
  const problems: string[] = [];
  const version = await cluster.request<{ gitVersion?: string; major?: string; minor?: string }>('GET', '/version');
  const serverVersion = version.gitVersion ?? `v${version.major}.${version.minor}`;
  const minor = Number(/^v?1\.(\d+)/.exec(serverVersion)?.[1] ?? Number.NaN);
  if (!(minor >= SUPPORTED_MINORS.min && minor <= SUPPORTED_MINORS.max))
    problems.push(
      `Kubernetes ${serverVersion} is outside the supported range 1.${SUPPORTED_MINORS.min}-1.${SUPPORTED_MINORS.max}`,
    );
  for (const object of manifests) {
    const served = await cluster.resource(object.apiVersion, object.kind);
    if (!served)
      problems.push(`${describe(refOf(object))}: ${object.kind} ${object.apiVersion} is not served by the cluster`);
    else if (!served.namespaced) problems.push(`${describe(refOf(object))}: ${object.kind} is cluster-scoped`);
  }
  const description = `Kubernetes ${serverVersion} at ${cluster.server}, namespace ${target.namespace}`;
  try {
    await cluster.request('GET', `/api/v1/namespaces/${encodeURIComponent(target.namespace)}`);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    problems.push(`Namespace/${target.namespace} does not exist`);
    return { serverVersion, description, current: { present: false, running: false }, problems };
  }
  const live = await liveRelease(cluster, target, manifests.map(refOf));
  for (const object of live.raw) {
    const problem = adoptionProblem(target, object);
    if (problem) problems.push(problem);
  }
  // A release restore could not bring back is refused before it is deployed, not when it has to be rolled back.
  for (const object of manifests) {
    const problem = entryProblem(target, { ...refOf(object), object });
    if (problem) problems.push(problem);
  }
  const namespaced = `/api/v1/namespaces/${encodeURIComponent(target.namespace)}`;
  const limitRanges = (await list(cluster, `${namespaced}/limitranges`)).map((o) => ({
    ...o,
    apiVersion: 'v1',
    kind: 'LimitRange',
  }));
  const quotas = (await list(cluster, `${namespaced}/resourcequotas`)).map((o) => ({
    ...o,
    apiVersion: 'v1',
    kind: 'ResourceQuota',
  }));
  const needed = releaseAmounts(manifests, limitRanges);
  const replaced = releaseAmounts(
    live.raw.filter((o) => WORKLOAD_KINDS.has(o.kind)),
    limitRanges,
  );
  problems.push(...needed.problems, ...quotaProblems(quotas, needed.total, replaced.total));
  for (const dependency of dependsOn) {
    const problem = await dependencyProblem(cluster, target.namespace, dependency);
    if (problem) problems.push(problem);
  }
  return { serverVersion, description, current: describeRelease(target, live), problems };
}

/**
 * Every object of the release through server-side apply with dryRun=All: admission, validation and defaulting run,
 * nothing is stored. Each problem names the object and the fields the server complained about.
 */
export async function dryRunRelease(target: KubernetesTarget, image?: PinnedImage): Promise<string[]> {
  const cluster = connect(target);
  const pinned = image ?? { reference: `${target.imageRepository}@${PLACEHOLDER_DIGEST}`, digest: PLACEHOLDER_DIGEST };
  const { objects, imageUses } = prepare(target, await loadManifests(target), pinned);
  const problems: string[] = [];
  if (imageUses === 0) problems.push(`no container of the release uses the image repository ${target.imageRepository}`);
  for (const object of objects) {
    try {
      await serverSideApply(cluster, object, { fieldManager: target.fieldManager, dryRun: true });
    } catch (error) {
      if (isRefusal(error)) problems.push(`${describe(refOf(object))}: ${explain(error)}`);
      else if (isFailureOf(error, 'invalid') || isFailureOf(error, 'forbidden'))
        problems.push(`${describe(refOf(object))}: ${messageOf(error)}`);
      else throw error;
    }
  }
  return problems;
}
