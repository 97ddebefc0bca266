/**
 * Rollback points stored in the cluster, next to the workload, the way Helm keeps releases: one Secret per revision,
 * its content gzip-compressed and hashed. Secret values therefore never leave the cluster; what the workflow gets is
 * the Secret's name and hashes.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  SNAPSHOT_SECRET_TYPE,
  releaseSnapshotSchema,
  type KubernetesTarget,
  type ReleaseSnapshot,
} from '../../domain/kubernetes.js';
import type { ReleaseState } from '../../domain/release.js';
import type { KeptReleases } from '../../domain/target.js';
import { fail } from '../../domain/failures.js';
import { checkpoint } from '../targets/attempt.js';
import { KubeApiError, connect, isNotFound, type Cluster, type KubeObject } from './client.js';
import { labelValue, loadManifests, refOf, type ObjectRef } from './manifests.js';
import { autoscaledTargets } from './autoscaling.js';
import { configuredEntries, describeRelease, liveRelease, releaseHash, sha256 } from './objects.js';

const SNAPSHOT_LABEL = {
  service: 'deploy-agent.dev/snapshot-service',
  environment: 'deploy-agent.dev/snapshot-environment',
  revision: 'deploy-agent.dev/revision',
  takenBy: 'deploy-agent.dev/taken-by',
} as const;
const SNAPSHOT_ANNOTATION = {
  takenBy: 'deploy-agent.dev/taken-by',
  releaseDeploymentId: 'deploy-agent.dev/release-deployment-id',
  contentHash: 'deploy-agent.dev/content-sha256',
} as const;
const CREATE_ATTEMPTS = 3;

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

const secretsPath = (target: KubernetesTarget): string => `/api/v1/namespaces/${target.namespace}/secrets`;
const snapshotName = (target: KubernetesTarget, revision: number): string =>
  `deploy-agent.${target.service}.${target.environment}.v${revision}`;
const revisionOf = (secret: KubeObject): number =>
  Number((secret.metadata.labels as Record<string, string> | undefined)?.[SNAPSHOT_LABEL.revision] ?? 0);
const annotation = (secret: KubeObject, key: string): string | undefined =>
  (secret.metadata.annotations as Record<string, string> | undefined)?.[key];

/** The revision Secrets of this service and environment, newest first. */
export async function listRevisions(cluster: Cluster, target: KubernetesTarget): Promise<SecretObject[]> {
  const list = await cluster.request<{ items?: SecretObject[] }>('GET', secretsPath(target), {
    query: {
      labelSelector: `${SNAPSHOT_LABEL.service}=${target.service},${SNAPSHOT_LABEL.environment}=${target.environment}`,
    },
  });
  return (list.items ?? [])
    .filter((s) => s.type === SNAPSHOT_SECRET_TYPE)
    .sort((a, b) => revisionOf(b) - revisionOf(a));
}

function decode(secret: SecretObject): ReleaseSnapshot {
  const packed = secret.data?.release;
  if (!packed) throw fail('invalid', `revision ${secret.metadata.name} holds no release`);
  const json = gunzipSync(Buffer.from(packed, 'base64')).toString('utf8');
  if (sha256(json) !== annotation(secret, SNAPSHOT_ANNOTATION.contentHash))
    throw fail('invalid', `revision ${secret.metadata.name} does not match its content hash: it was altered`);
  return asConfigured(releaseSnapshotSchema.parse(JSON.parse(json)));
}

/**
 * A stored revision as this version compares and restores it: each object reduced to its configuration by the
 * revision's own autoscalers, its hash and the release's configHash computed again from the stored objects.
 * Revisions stored before the replica count of an autoscaled workload was left out of the configuration hold it in
 * their objects, in the hashes of those objects and in their configHash: read as stored, they would compare unequal
 * with the same release live as soon as the autoscaler moved, and restoring them would take the replica count back
 * from the autoscaler. The stored objects are the record; the stored hashes are derived from them and are computed
 * again rather than trusted. For every revision without an autoscaler the result equals what is stored.
 */
function asConfigured(snapshot: ReleaseSnapshot): ReleaseSnapshot {
  const entries = configuredEntries(snapshot.entries, autoscaledTargets(snapshot.entries.map((e) => e.object)));
  return { ...snapshot, entries, configHash: releaseHash(entries) };
}

export async function readSnapshot(cluster: Cluster, target: KubernetesTarget, name: string): Promise<ReleaseSnapshot> {
  const snapshot = await findSnapshot(cluster, target, name);
  if (!snapshot) throw fail('invalid', `the rollback point ${name} no longer exists in ${target.namespace}`);
  return snapshot;
}

/** A revision, or undefined once it was pruned. */
export async function findSnapshot(
  cluster: Cluster,
  target: KubernetesTarget,
  name: string,
): Promise<ReleaseSnapshot | undefined> {
  try {
    return decode(await cluster.request<SecretObject>('GET', `${secretsPath(target)}/${name}`));
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export function stateOf(snapshot: ReleaseSnapshot, handle: string): ReleaseState {
  const { present, running, deploymentId, version, imageDigest, configHash } = snapshot;
  return { present, handle, deploymentId, version, imageDigest, configHash, running };
}

function secretOf(target: KubernetesTarget, snapshot: ReleaseSnapshot): SecretObject {
  const json = JSON.stringify(snapshot);
  const takenBy = labelValue(snapshot.takenBy);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: SNAPSHOT_SECRET_TYPE,
    metadata: {
      name: snapshotName(target, snapshot.revision),
      namespace: target.namespace,
      labels: {
        [SNAPSHOT_LABEL.service]: target.service,
        [SNAPSHOT_LABEL.environment]: target.environment,
        [SNAPSHOT_LABEL.revision]: String(snapshot.revision),
        ...(takenBy ? { [SNAPSHOT_LABEL.takenBy]: takenBy } : {}),
      },
      annotations: {
        [SNAPSHOT_ANNOTATION.takenBy]: snapshot.takenBy,
        [SNAPSHOT_ANNOTATION.releaseDeploymentId]: snapshot.deploymentId ?? '',
        [SNAPSHOT_ANNOTATION.contentHash]: sha256(json),
      },
    },
    data: { release: gzipSync(json).toString('base64') },
  };
}

/** The objects of the release's manifests; liveRelease adds those an earlier apply labelled. */
async function managedRefs(target: KubernetesTarget): Promise<ObjectRef[]> {
  return (await loadManifests(target)).map(refOf);
}

/**
 * The rollback point: every object the release manages as it is now, and the ones the new release would add (absent,
 * so restore deletes them). A retry returns the revision this deployment already took: by then the target may have
 * been changed, and a second snapshot would capture the half-applied release.
 */
export async function createRollbackPoint(target: KubernetesTarget, deploymentId: string): Promise<ReleaseState> {
  const cluster = connect(target);
  const refs = await managedRefs(target);
  for (let attempt = 1; ; attempt++) {
    checkpoint('taking the rollback point');
    const revisions = await listRevisions(cluster, target);
    const own = revisions.find((s) => annotation(s, SNAPSHOT_ANNOTATION.takenBy) === deploymentId);
    if (own) return stateOf(decode(own), own.metadata.name);
    const live = await liveRelease(cluster, target, refs);
    const snapshot: ReleaseSnapshot = {
      format: 1,
      service: target.service,
      environment: target.environment,
      revision: (revisions[0] ? revisionOf(revisions[0]) : 0) + 1,
      takenBy: deploymentId,
      takenAt: new Date().toISOString(),
      ...describeRelease(target, live),
      entries: live.entries,
    };
    const secret = secretOf(target, snapshot);
    try {
      await cluster.request('POST', secretsPath(target), { body: secret });
    } catch (error) {
      // Another writer took this revision number: look again, bounded.
      if (error instanceof KubeApiError && error.status === 409 && attempt < CREATE_ATTEMPTS) continue;
      throw error;
    }
    return stateOf(snapshot, secret.metadata.name);
  }
}

/**
 * After a successful change: keeps the newest historyLimit revisions. Never earlier: a rollback's own rollback point
 * would otherwise push out the very revision it is about to restore.
 */
export async function pruneRevisions(target: KubernetesTarget): Promise<string[]> {
  const cluster = connect(target);
  const stale = (await listRevisions(cluster, target)).slice(Math.max(1, target.historyLimit));
  for (const secret of stale) {
    checkpoint(`pruning ${secret.metadata.name}`);
    await cluster.request('DELETE', `${secretsPath(target)}/${secret.metadata.name}`).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }
  return stale.map((s) => s.metadata.name);
}

/** The live release and every stored revision, newest first; an altered revision fails the whole listing. */
export async function keptRevisions(target: KubernetesTarget): Promise<KeptReleases> {
  const cluster = connect(target);
  const revisions = await listRevisions(cluster, target);
  const live = describeRelease(target, await liveRelease(cluster, target, await managedRefs(target)));
  return {
    live,
    kept: revisions.map((secret) => stateOf(decode(secret), secret.metadata.name)),
    where: `${target.service} in ${target.environment} (namespace ${target.namespace})`,
  };
}
