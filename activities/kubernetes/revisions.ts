/**
 * Rollback points stored in the cluster, next to the workload, the way Helm keeps releases: one Secret per revision,
 * its content gzip-compressed, hashed and signed with the worker's revision key (revision-integrity.ts). Secret values
 * therefore never leave the cluster; what the workflow gets is the Secret's name, hashes and HMAC.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  SNAPSHOT_SECRET_TYPE,
  releaseSnapshotSchema,
  type KubernetesTarget,
  type ReleaseSnapshot,
} from '../../domain/kubernetes.js';
import type { ReleaseState, RevisionIntegrity } from '../../domain/release.js';
import type { KeptReleases } from '../../domain/target.js';
import { fail, InvalidInput } from '../../domain/failures.js';
import { keyRingFromEnv, type KeyRing } from '../../keys/key-ring.js';
import { checkpoint } from '../targets/attempt.js';
import { KubeApiError, connect, isNotFound, type Cluster, type KubeObject } from './client.js';
import { labelValue, loadManifests, refOf, type ObjectRef } from './manifests.js';
import { autoscaledTargets } from './autoscaling.js';
import { configuredEntries, describeRelease, liveRelease, releaseHash, sha256 } from './objects.js';
import { segment } from './names.js';
import { integrityProblem, signRevision } from './revision-integrity.js';

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
  hmac: 'deploy-agent.dev/hmac-sha256',
  keyId: 'deploy-agent.dev/key-id',
} as const;
const CREATE_ATTEMPTS = 3;

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

const secretsPath = (target: KubernetesTarget): string => `/api/v1/namespaces/${segment(target.namespace)}/secrets`;
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

/** The worker's key ring; without one no revision can be signed or trusted. */
function keyRing(): KeyRing {
  try {
    return keyRingFromEnv();
  } catch (error) {
    if (error instanceof InvalidInput)
      throw fail('invalid', `revisions cannot be signed or verified: ${error.message}`);
    throw error;
  }
}

const refused = (name: string, why: string): Error =>
  fail('invalid', `revision ${name} is refused: ${why}; nothing was restored from it`);

interface OpenedRevision {
  snapshot: ReleaseSnapshot;
  /** Undefined for a revision stored before revisions were signed. */
  integrity?: RevisionIntegrity;
}

/**
 * A revision's content, checked against its content hash and, when it carries one, its HMAC (an HMAC that does not
 * verify fails, whatever reads the revision). A revision without an HMAC is returned unsigned: listing it is harmless,
 * restoring from it is refused (trustedSnapshot).
 */
function decode(secret: SecretObject, target: KubernetesTarget, ring: KeyRing): OpenedRevision {
  const name = secret.metadata.name;
  const packed = secret.data?.release;
  if (!packed) throw refused(name, 'it holds no release');
  let json: string;
  try {
    json = gunzipSync(Buffer.from(packed, 'base64')).toString('utf8');
  } catch {
    throw refused(name, 'its content is not gzip-compressed JSON');
  }
  if (sha256(json) !== annotation(secret, SNAPSHOT_ANNOTATION.contentHash))
    throw refused(name, 'it does not match its content hash: it was altered');
  const hmac = annotation(secret, SNAPSHOT_ANNOTATION.hmac);
  const keyId = annotation(secret, SNAPSHOT_ANNOTATION.keyId);
  const stored = { namespace: target.namespace, name, content: json };
  const signed = hmac !== undefined || keyId !== undefined;
  if (signed) {
    const problem = integrityProblem(ring, stored, { hmac, keyId });
    if (problem) throw refused(name, problem);
  }
  const parsed = releaseSnapshotSchema.safeParse(JSON.parse(json));
  if (!parsed.success) throw refused(name, 'its content is not a release snapshot');
  const snapshot = parsed.data;
  if (
    snapshot.service !== target.service ||
    snapshot.environment !== target.environment ||
    name !== snapshotName(target, snapshot.revision)
  )
    throw refused(name, `it holds revision ${snapshot.revision} of ${snapshot.service} in ${snapshot.environment}`);
  return {
    snapshot: asConfigured(snapshot),
    integrity: signed ? { revision: name, keyId: keyId as string, hmac: hmac as string } : undefined,
  };
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

/**
 * The revision a recorded release state names, as far as it can be trusted to restore from: signed with the worker's
 * key, and when the history recorded its HMAC, that very HMAC (a revision replaced by another one signed by the
 * worker, an older revision copied over it, is refused too). A revision without an HMAC is refused: stored before
 * revisions were signed, it is indistinguishable from one forged by whoever may edit Secrets in the namespace.
 */
export async function readSnapshot(
  cluster: Cluster,
  target: KubernetesTarget,
  name: string,
  recorded?: RevisionIntegrity,
): Promise<ReleaseSnapshot> {
  const snapshot = await findSnapshot(cluster, target, name, recorded);
  if (!snapshot) throw fail('invalid', `the rollback point ${name} no longer exists in ${target.namespace}`);
  return snapshot;
}

/** As readSnapshot, or undefined once the revision was pruned. */
export async function findSnapshot(
  cluster: Cluster,
  target: KubernetesTarget,
  name: string,
  recorded?: RevisionIntegrity,
): Promise<ReleaseSnapshot | undefined> {
  const ring = keyRing();
  if (recorded && recorded.revision !== name)
    throw refused(name, `the history recorded the HMAC of ${recorded.revision}, not of this revision`);
  let secret: SecretObject;
  try {
    secret = await cluster.request<SecretObject>('GET', `${secretsPath(target)}/${segment(name)}`);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
  if (secret.type !== SNAPSHOT_SECRET_TYPE) throw refused(name, `it is not of type ${SNAPSHOT_SECRET_TYPE}`);
  const { snapshot, integrity } = decode(secret, target, ring);
  if (!integrity)
    throw refused(name, 'it carries no HMAC (stored before revisions were signed, or the HMAC was removed)');
  if (recorded && (recorded.keyId !== integrity.keyId || recorded.hmac !== integrity.hmac))
    throw refused(name, 'its HMAC differs from the one the history recorded when the rollback point was taken');
  return snapshot;
}

export function stateOf(snapshot: ReleaseSnapshot, handle: string, integrity?: RevisionIntegrity): ReleaseState {
  const { present, running, deploymentId, version, imageDigest, configHash } = snapshot;
  return {
    present,
    handle,
    deploymentId,
    version,
    imageDigest,
    configHash,
    running,
    ...(integrity ? { integrity } : {}),
  };
}

function secretOf(target: KubernetesTarget, snapshot: ReleaseSnapshot, ring: KeyRing): SecretObject {
  const json = JSON.stringify(snapshot);
  const name = snapshotName(target, snapshot.revision);
  const integrity = signRevision(ring, { namespace: target.namespace, name, content: json });
  const takenBy = labelValue(snapshot.takenBy);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: SNAPSHOT_SECRET_TYPE,
    metadata: {
      name,
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
        [SNAPSHOT_ANNOTATION.hmac]: integrity.hmac,
        [SNAPSHOT_ANNOTATION.keyId]: integrity.keyId,
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
  const ring = keyRing();
  const refs = await managedRefs(target);
  for (let attempt = 1; ; attempt++) {
    checkpoint('taking the rollback point');
    const revisions = await listRevisions(cluster, target);
    const own = revisions.find((s) => annotation(s, SNAPSHOT_ANNOTATION.takenBy) === deploymentId);
    if (own) {
      const { snapshot, integrity } = decode(own, target, ring);
      return stateOf(snapshot, own.metadata.name, integrity);
    }
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
    const secret = secretOf(target, snapshot, ring);
    try {
      await cluster.request('POST', secretsPath(target), { body: secret });
    } catch (error) {
      // Another writer took this revision number: look again, bounded.
      if (error instanceof KubeApiError && error.status === 409 && attempt < CREATE_ATTEMPTS) continue;
      throw error;
    }
    const integrity = {
      revision: secret.metadata.name,
      keyId: annotation(secret, SNAPSHOT_ANNOTATION.keyId) ?? '',
      hmac: annotation(secret, SNAPSHOT_ANNOTATION.hmac) ?? '',
    };
    return stateOf(snapshot, secret.metadata.name, integrity);
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
    await cluster
      .request('DELETE', `${secretsPath(target)}/${segment(secret.metadata.name)}`)
      .catch((error: unknown) => {
        if (!isNotFound(error)) throw error;
      });
  }
  return stale.map((s) => s.metadata.name);
}

/**
 * The live release and every stored revision, newest first, each with its HMAC so the rollback restores exactly the
 * revision chosen here; an altered revision fails the whole listing. One stored before revisions were signed is
 * listed without, and restoring it is refused.
 */
export async function keptRevisions(target: KubernetesTarget): Promise<KeptReleases> {
  const cluster = connect(target);
  const ring = keyRing();
  const revisions = await listRevisions(cluster, target);
  const live = describeRelease(target, await liveRelease(cluster, target, await managedRefs(target)));
  return {
    live,
    kept: revisions.map((secret) => {
      const { snapshot, integrity } = decode(secret, target, ring);
      return stateOf(snapshot, secret.metadata.name, integrity);
    }),
    where: `${target.service} in ${target.environment} (namespace ${target.namespace})`,
  };
}
