/**
 * What a restore may write: objects of the environment's namespace, of the kinds a release of workloads and their
 * configuration holds. A revision is checked entry by entry before anything is applied, so a revision naming another
 * namespace or a kind that grants rights (Roles, RoleBindings) is refused as a whole. The policy may add kinds
 * (`kubernetes.restorableKinds`).
 */
import type { KubernetesTarget, SnapshotEntry } from '../../domain/kubernetes.js';
import { nameProblem, nameRuleOf } from './names.js';

/** `Kind` for the core group, `Kind.group` otherwise: how the allowlist names a kind. */
export const qualifiedKind = (apiVersion: string, kind: string): string =>
  apiVersion.includes('/') ? `${kind}.${apiVersion.split('/')[0]}` : kind;

export const DEFAULT_RESTORABLE_KINDS: readonly string[] = [
  'ConfigMap',
  'Secret',
  'Service',
  'ServiceAccount',
  'PersistentVolumeClaim',
  'Deployment.apps',
  'StatefulSet.apps',
  'DaemonSet.apps',
  'Job.batch',
  'CronJob.batch',
  'HorizontalPodAutoscaler.autoscaling',
  'PodDisruptionBudget.policy',
  'Ingress.networking.k8s.io',
  'NetworkPolicy.networking.k8s.io',
];

export function restorableKinds(target: KubernetesTarget): Set<string> {
  return new Set([...DEFAULT_RESTORABLE_KINDS, ...(target.restorableKinds ?? [])]);
}

/** Why restore must not write or delete what an entry names, or undefined. */
export function entryProblem(
  target: KubernetesTarget,
  entry: Pick<SnapshotEntry, 'apiVersion' | 'kind' | 'namespace' | 'name' | 'object'>,
): string | undefined {
  const what = `${entry.kind}/${entry.namespace}/${entry.name}`;
  if (entry.namespace !== target.namespace) return `${what} is outside the environment's namespace ${target.namespace}`;
  const kind = qualifiedKind(entry.apiVersion, entry.kind);
  if (!restorableKinds(target).has(kind))
    return `${what}: kind ${kind} is not one restore may write (kubernetes.restorableKinds of ${target.environment})`;
  const nameIssue = nameProblem(entry.name, nameRuleOf(entry.kind)) ?? nameProblem(entry.namespace, 'dns-1123-label');
  if (nameIssue) return `${what}: ${nameIssue}`;
  const metadata = (entry.object?.metadata ?? {}) as { name?: unknown; namespace?: unknown };
  const object = entry.object as { apiVersion?: unknown; kind?: unknown } | undefined;
  if (
    object &&
    (metadata.name !== entry.name ||
      metadata.namespace !== entry.namespace ||
      object.kind !== entry.kind ||
      object.apiVersion !== entry.apiVersion)
  )
    return `${what}: the stored object names another object (${String(object.kind)}/${String(metadata.namespace)}/${String(metadata.name)})`;
  return undefined;
}
