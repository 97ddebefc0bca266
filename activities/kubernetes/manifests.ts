/**
 * A release is a directory of plain YAML manifests. Loading refuses what the target cannot own safely (objects of
 * another namespace, cluster-scoped kinds, duplicates); preparing adds the image and the labels apply and prune use.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage } from '../../domain/release.js';
import { fail } from '../../domain/failures.js';
import { yamlSyntaxProblem, yamlValueOf } from '../../domain/yaml.js';
import type { KubeObject } from './client.js';
import { checkObjectNames } from './names.js';

export const LABEL = {
  managedBy: 'app.kubernetes.io/managed-by',
  service: 'deploy-agent.dev/service',
  environment: 'deploy-agent.dev/environment',
  deploymentId: 'deploy-agent.dev/deployment-id',
  version: 'deploy-agent.dev/version',
} as const;
export const MANAGER = 'deploy-agent';

/** Label values are short and restricted; the exact ids and versions are kept in annotations of the same names. */
export const ANNOTATION = { deploymentId: LABEL.deploymentId, version: LABEL.version } as const;

// Helm's install order, trimmed to namespaced kinds: what others reference comes first, what scales or routes last.
const ORDER = [
  'NetworkPolicy',
  'ResourceQuota',
  'LimitRange',
  'PodDisruptionBudget',
  'ServiceAccount',
  'Secret',
  'ConfigMap',
  'PersistentVolumeClaim',
  'Role',
  'RoleBinding',
  'Service',
  'DaemonSet',
  'Pod',
  'ReplicaSet',
  'Deployment',
  'StatefulSet',
  'Job',
  'CronJob',
  'HorizontalPodAutoscaler',
  'Ingress',
];
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'Node',
  'PersistentVolume',
  'StorageClass',
  'CustomResourceDefinition',
  'ClusterRole',
  'ClusterRoleBinding',
  'IngressClass',
  'PriorityClass',
  'APIService',
  'MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration',
]);
export const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet']);

export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
}

const groupOf = (apiVersion: string): string => (apiVersion.includes('/') ? (apiVersion.split('/')[0] ?? '') : '');
/** Identity across API versions of the same group, so apps/v1 and a later apps/v2 name one object. */
export const idOf = (ref: ObjectRef): string => `${ref.kind}.${groupOf(ref.apiVersion)}/${ref.namespace}/${ref.name}`;
export const describe = (ref: ObjectRef): string => `${ref.kind}/${ref.namespace}/${ref.name}`;
/** Kind and name, for reports of one namespace's release. */
export const objectName = (ref: ObjectRef): string => `${ref.kind}/${ref.name}`;
export const refOf = (o: KubeObject): ObjectRef => ({
  apiVersion: o.apiVersion,
  kind: o.kind,
  namespace: o.metadata.namespace ?? '',
  name: o.metadata.name,
});

const rank = (kind: string): number => {
  const index = ORDER.indexOf(kind);
  return index === -1 ? ORDER.length : index;
};
export const byApplyOrder = (a: ObjectRef, b: ObjectRef): number =>
  rank(a.kind) - rank(b.kind) || a.name.localeCompare(b.name);

async function manifestFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch((error: unknown) => {
    throw fail('invalid', `release manifests ${dir} cannot be read: ${(error as Error).message}`);
  });
  return entries
    .filter((e) => e.isFile() && /\.(ya?ml|json)$/.test(e.name))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

// Reads in flight ahead of the file being parsed: one read at a time leaves the parser waiting on each file's open,
// read and close in turn, which made a third of loading a release of thousands of small files.
const READ_AHEAD = 32;

/** Each file's text, in order; later files are already being read while an earlier one is parsed. */
async function* readInOrder(files: readonly string[]): AsyncGenerator<[string, string]> {
  const pending: Promise<string>[] = [];
  let next = 0;
  for (const file of files) {
    while (next < files.length && pending.length < READ_AHEAD) {
      const read = readFile(files[next++]!, 'utf8');
      // Handled where it is awaited; this only spares an unhandled rejection when an earlier file stops the load.
      read.catch(() => undefined);
      pending.push(read);
    }
    yield [file, await pending.shift()!];
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checked(value: unknown, where: string, namespace: string): KubeObject {
  const metadata = isRecord(value) ? value.metadata : undefined;
  if (!isRecord(value) || typeof value.apiVersion !== 'string' || typeof value.kind !== 'string')
    throw fail('invalid', `${where}: expected a Kubernetes object with apiVersion and kind`);
  if (!isRecord(metadata) || typeof metadata.name !== 'string' || !metadata.name)
    throw fail('invalid', `${where}: ${value.kind} has no metadata.name`);
  checkObjectNames(where, value.kind, metadata);
  if (CLUSTER_SCOPED.has(value.kind))
    throw fail(
      'invalid',
      `${where}: ${value.kind}/${metadata.name} is cluster-scoped; a release holds namespaced objects only`,
    );
  if (metadata.namespace !== undefined && metadata.namespace !== namespace)
    throw fail(
      'invalid',
      `${where}: ${value.kind}/${metadata.name} is in namespace ${JSON.stringify(metadata.namespace)}, not ${namespace}`,
    );
  // Status is the cluster's to write; a manifest's copy of it would only confuse the hash of what we manage.
  const object: Record<string, unknown> = { ...value, metadata: { ...metadata, namespace } };
  delete object.status;
  return object as KubeObject;
}

/** Every object of the release, in apply order. Bad files are invalid input: nothing was changed yet. */
export async function loadManifests(target: KubernetesTarget): Promise<KubeObject[]> {
  const objects: KubeObject[] = [];
  for await (const [file, text] of readInOrder(await manifestFiles(target.manifestsDir))) {
    const name = path.relative(target.manifestsDir, file);
    const lineCounter = new LineCounter();
    const documents = parseAllDocuments(text, { lineCounter, prettyErrors: false });
    for (const [index, document] of documents.entries()) {
      const error = document.errors[0];
      // Position and kind only: the parser's message quotes the manifest, which may be a Secret's.
      if (error) throw fail('invalid', `${name} document ${index + 1}: ${yamlSyntaxProblem(error, lineCounter)}`);
      const plain = yamlValueOf(document, lineCounter);
      if ('problem' in plain) throw fail('invalid', `${name} document ${index + 1}: ${plain.problem}`);
      const value = plain.value;
      if (value === null || value === undefined) continue;
      const items = isRecord(value) && value.kind === 'List' && Array.isArray(value.items) ? value.items : [value];
      for (const item of items) objects.push(checked(item, `${name} document ${index + 1}`, target.namespace));
    }
  }
  if (objects.length === 0) throw fail('invalid', `release manifests ${target.manifestsDir} hold no objects`);
  const seen = new Set<string>();
  for (const object of objects) {
    const id = idOf(refOf(object));
    if (seen.has(id)) throw fail('invalid', `${describe(refOf(object))} appears twice in the release manifests`);
    seen.add(id);
  }
  return objects.sort((a, b) => byApplyOrder(refOf(a), refOf(b)));
}

/** The pod specs inside an object, where containers and their images live. */
export function podSpecsOf(object: Record<string, unknown>): Record<string, unknown>[] {
  const at = (value: unknown, ...keys: string[]): unknown =>
    keys.reduce<unknown>((v, k) => (isRecord(v) ? v[k] : undefined), value);
  const candidates =
    object.kind === 'Pod'
      ? [at(object, 'spec')]
      : object.kind === 'CronJob'
        ? [at(object, 'spec', 'jobTemplate', 'spec', 'template', 'spec')]
        : [at(object, 'spec', 'template', 'spec')];
  return candidates.filter(isRecord);
}

export function containersOf(podSpec: Record<string, unknown>): Record<string, unknown>[] {
  return ['initContainers', 'containers']
    .flatMap((key) => (Array.isArray(podSpec[key]) ? (podSpec[key] as unknown[]) : []))
    .filter(isRecord);
}

/** `host:port/path/name` of an image reference, without its tag or digest. */
export function repositoryOf(image: string): string {
  const withoutDigest = image.split('@')[0] ?? image;
  const slash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  return colon > slash ? withoutDigest.slice(0, colon) : withoutDigest;
}

export interface Stamp {
  deploymentId?: string;
  version?: string;
}

/** The tail of a value that fits in a label (63 characters, alphanumeric at both ends), or nothing. */
export function labelValue(value: string): string | undefined {
  const tail = value.slice(-63).replace(/^[^A-Za-z0-9]+/, '');
  return /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(tail) ? tail : undefined;
}

/** The release as it will be applied: the pinned image in its containers, and the labels that mark it ours. */
export function prepare(target: KubernetesTarget, objects: KubeObject[], image: PinnedImage, stamp: Stamp = {}) {
  let uses = 0;
  const prepared = objects.map((original) => {
    const object = structuredClone(original);
    for (const spec of podSpecsOf(object))
      for (const container of containersOf(spec))
        if (typeof container.image === 'string' && repositoryOf(container.image) === target.imageRepository) {
          container.image = image.reference;
          uses++;
        }
    const labels: Record<string, string> = {
      ...((object.metadata.labels as Record<string, string> | undefined) ?? {}),
      [LABEL.managedBy]: MANAGER,
      [LABEL.service]: target.service,
      [LABEL.environment]: target.environment,
    };
    const annotations: Record<string, string> = {
      ...((object.metadata.annotations as Record<string, string> | undefined) ?? {}),
    };
    for (const key of ['deploymentId', 'version'] as const) {
      const value = stamp[key];
      if (value === undefined) continue;
      annotations[ANNOTATION[key]] = value;
      const short = labelValue(value);
      if (short) labels[LABEL[key]] = short;
    }
    object.metadata = { ...object.metadata, labels, annotations };
    return object;
  });
  return { objects: prepared, imageUses: uses };
}

/** Why a live object is not this release's to change: another service or environment labelled it as its own. */
export function foreignOwner(target: KubernetesTarget, live: KubeObject): string | undefined {
  const labels = (live.metadata.labels as Record<string, string> | undefined) ?? {};
  const service = labels[LABEL.service];
  const environment = labels[LABEL.environment];
  if (service === undefined && environment === undefined) return undefined;
  if (service === target.service && environment === target.environment) return undefined;
  return `${describe(refOf(live))} belongs to service ${service ?? '?'} in environment ${environment ?? '?'}`;
}

export const selectorOf = (target: KubernetesTarget): string =>
  `${LABEL.service}=${target.service},${LABEL.environment}=${target.environment}`;
