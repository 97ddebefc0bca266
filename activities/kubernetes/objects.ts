/**
 * Live objects of a release: which ones it manages, their configuration (what restore writes back and what the
 * consistency check compares: the managed fields, less what an autoscaler of the release sets), and its hash.
 */
import { createHash } from 'node:crypto';
import type { KubernetesTarget, SnapshotEntry } from '../../domain/kubernetes.js';
import { checkpoint } from '../targets/attempt.js';
import { autoscaledTargets, configurationOf } from './autoscaling.js';
import { collectionPath, isNotFound, type Cluster, type KubeObject } from './client.js';
import {
  ANNOTATION,
  WORKLOAD_KINDS,
  byApplyOrder,
  containersOf,
  idOf,
  podSpecsOf,
  refOf,
  repositoryOf,
  selectorOf,
  type ObjectRef,
} from './manifests.js';
import { workloadStatus } from './workloads.js';
import { segment } from './names.js';
import { OWNERSHIP } from './ownership.js';

/** Kinds searched for objects carrying the release's labels, besides those in its manifests and revisions. */
const LABELLED_KINDS: [string, string][] = [
  ['apps/v1', 'Deployment'],
  ['apps/v1', 'StatefulSet'],
  ['apps/v1', 'DaemonSet'],
  ['v1', 'Service'],
  ['v1', 'ConfigMap'],
  ['v1', 'Secret'],
  ['v1', 'ServiceAccount'],
  ['v1', 'PersistentVolumeClaim'],
  ['batch/v1', 'CronJob'],
  ['batch/v1', 'Job'],
  ['autoscaling/v2', 'HorizontalPodAutoscaler'],
  ['networking.k8s.io/v1', 'Ingress'],
  ['networking.k8s.io/v1', 'NetworkPolicy'],
  ['policy/v1', 'PodDisruptionBudget'],
  ['rbac.authorization.k8s.io/v1', 'Role'],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding'],
];

// Set by the server or by controllers: carrying them back would fight the controllers or be refused.
const SERVER_METADATA = [
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'managedFields',
  'selfLink',
  'ownerReferences',
  'finalizers',
  'generateName',
];
// The UID recorded on an object when it was applied (ownership.ts) names that incarnation of it, not its configuration.
const SERVER_ANNOTATIONS = [
  'deployment.kubernetes.io/revision',
  'kubectl.kubernetes.io/last-applied-configuration',
  OWNERSHIP.uid,
];
/** Allocated rather than configured: a recreated object gets new values and that is no difference. */
const ALLOCATED: Record<string, string[][]> = {
  Service: [
    ['spec', 'clusterIP'],
    ['spec', 'clusterIPs'],
  ],
  PersistentVolumeClaim: [['spec', 'volumeName']],
};

/** The managed fields of a live object: everything it is configured with, nothing the cluster filled in over time. */
export function managedFields(live: KubeObject): KubeObject {
  const object = structuredClone(live);
  delete object.status;
  const metadata = object.metadata as Record<string, unknown>;
  for (const key of SERVER_METADATA) delete metadata[key];
  const annotations = metadata.annotations as Record<string, string> | undefined;
  for (const key of SERVER_ANNOTATIONS) delete annotations?.[key];
  if (annotations && Object.keys(annotations).length === 0) delete metadata.annotations;
  for (const fieldPath of ALLOCATED[object.kind] ?? []) {
    const parent = fieldPath.slice(0, -1).reduce<unknown>((v, k) => (v as Record<string, unknown>)?.[k], object);
    const key = fieldPath.at(-1) ?? '';
    // A headless Service's `clusterIP: None` is configuration, not an allocated address.
    if (parent && typeof parent === 'object' && (parent as Record<string, unknown>)[key] !== 'None')
      delete (parent as Record<string, unknown>)[key];
  }
  dropNullTimestamps(object);
  return object;
}

/** Pod templates carry `creationTimestamp: null`; whether a server echoes it is no difference in configuration. */
function dropNullTimestamps(value: unknown): void {
  if (Array.isArray(value)) value.forEach(dropNullTimestamps);
  else if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (record.creationTimestamp === null) delete record.creationTimestamp;
    Object.values(record).forEach(dropNullTimestamps);
  }
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, canonical(v)]),
    );
  return value;
}

export const sha256 = (text: string): string => `sha256:${createHash('sha256').update(text).digest('hex')}`;
export const hashObject = (object: unknown): string => sha256(JSON.stringify(canonical(object)));

/** One hash for the whole release: each present object's identity and hash, in a stable order. */
export function releaseHash(entries: SnapshotEntry[]): string {
  const present = entries.filter((e) => e.object).map((e) => [idOf(e), e.hash] as const);
  return hashObject(present.sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Entries with each present object reduced to its configuration and hashed again: how a stored revision and the live
 * objects are brought to the same projection before they are compared. Absent entries stay as they are.
 */
export function configuredEntries(entries: SnapshotEntry[], autoscaled: ReadonlySet<string>): SnapshotEntry[] {
  return entries.map((entry) => {
    if (!entry.object) return entry;
    const object = configurationOf(entry.object, autoscaled);
    return { ...entry, hash: hashObject(object), object };
  });
}

/**
 * The part of a live value that a restore wrote: the keys of `written`, level by level (lists and scalars whole).
 * What other managers added since (an annotation, a label of their own) is not the release's and is left out, while
 * any value the restore wrote that changed or disappeared still shows.
 */
export function projectOnto(live: unknown, written: unknown): unknown {
  const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isMap(live) || !isMap(written)) return live;
  return Object.fromEntries(
    Object.keys(written)
      .filter((key) => key in live)
      .map((key) => [key, projectOnto(live[key], written[key])]),
  );
}

export async function readObject(cluster: Cluster, ref: ObjectRef): Promise<KubeObject | undefined> {
  const collection = await collectionPath(cluster, ref.apiVersion, ref.kind, ref.namespace);
  if (!collection) return undefined;
  try {
    return await cluster.request<KubeObject>('GET', `${collection}/${segment(ref.name)}`);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Objects carrying the release's labels: what an earlier apply created, whether or not the manifests still hold it. */
export async function labelledObjects(
  cluster: Cluster,
  target: KubernetesTarget,
  moreKinds: [string, string][] = [],
): Promise<KubeObject[]> {
  const kinds = new Map<string, [string, string]>();
  for (const [apiVersion, kind] of [...LABELLED_KINDS, ...moreKinds])
    kinds.set(`${apiVersion} ${kind}`, [apiVersion, kind]);
  const found: KubeObject[] = [];
  for (const [apiVersion, kind] of kinds.values()) {
    checkpoint();
    const collection = await collectionPath(cluster, apiVersion, kind, target.namespace);
    if (!collection) continue;
    const list = await cluster.request<{ items?: KubeObject[] }>('GET', collection, {
      query: { labelSelector: selectorOf(target) },
    });
    for (const item of list.items ?? []) found.push({ ...item, apiVersion, kind });
  }
  return found;
}

export interface LiveRelease {
  entries: SnapshotEntry[];
  /** The objects as the server returns them, status included; never stored. */
  raw: KubeObject[];
}

/**
 * The live state of every object in refs plus every object labelled as the release's: each entry holds the object's
 * configuration, projected by the autoscalers among these live objects, and its hash.
 */
export async function liveRelease(cluster: Cluster, target: KubernetesTarget, refs: ObjectRef[]): Promise<LiveRelease> {
  const wanted = new Map<string, ObjectRef>();
  for (const ref of refs) wanted.set(idOf(ref), ref);
  const raw: KubeObject[] = [];
  const kinds = refs.map((r): [string, string] => [r.apiVersion, r.kind]);
  for (const object of await labelledObjects(cluster, target, kinds)) {
    wanted.delete(idOf(refOf(object)));
    raw.push(object);
  }
  for (const ref of wanted.values()) {
    checkpoint();
    const object = await readObject(cluster, ref);
    if (object) raw.push({ ...object, apiVersion: ref.apiVersion, kind: ref.kind });
  }
  const autoscaled = autoscaledTargets(raw);
  const entries: SnapshotEntry[] = raw.map((object) => {
    const configuration = configurationOf(managedFields(object), autoscaled);
    return { ...refOf(object), hash: hashObject(configuration), object: configuration };
  });
  for (const ref of wanted.values())
    if (!raw.some((o) => idOf(refOf(o)) === idOf(ref))) entries.push({ ...ref, hash: 'absent' });
  entries.sort((a, b) => byApplyOrder(a, b));
  return { entries, raw };
}

/** What identifies a release without its contents: digest of the service's image, deployment, version, health. */
export function describeRelease(target: KubernetesTarget, live: LiveRelease) {
  const workloads = live.raw.filter((o) => WORKLOAD_KINDS.has(o.kind));
  const stamped = [...workloads, ...live.raw].find((o) => annotationOf(o, ANNOTATION.deploymentId));
  let imageDigest: string | undefined;
  for (const object of workloads)
    for (const spec of podSpecsOf(object))
      for (const container of containersOf(spec)) {
        const image = typeof container.image === 'string' ? container.image : '';
        if (!imageDigest && repositoryOf(image) === target.imageRepository)
          imageDigest = /@(sha256:[a-f0-9]{64})$/.exec(image)?.[1] ?? image;
      }
  return {
    present: live.raw.length > 0,
    deploymentId: stamped ? annotationOf(stamped, ANNOTATION.deploymentId) : undefined,
    version: stamped ? annotationOf(stamped, ANNOTATION.version) : undefined,
    imageDigest,
    configHash: releaseHash(live.entries),
    running: live.raw.length > 0 && workloads.every((w) => workloadStatus(w).done),
  };
}

function annotationOf(object: KubeObject, key: string): string | undefined {
  return (object.metadata.annotations as Record<string, string> | undefined)?.[key];
}
