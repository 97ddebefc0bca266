/**
 * The operations every target offers, as activities: each dispatches to the module of the system it talks to.
 * Workflows see only these, so a runbook reads the same whatever it deploys to.
 */
import type { HealthCheckSpec } from '../domain/spec.js';
import {
  compareReleases,
  type ConsistencyReport,
  type PinnedImage,
  type ReleaseDiff,
  type ReleaseState,
} from '../domain/release.js';
import type { Target } from '../domain/requests.js';
import * as docker from './docker.js';
import { awaitHealthy } from './health.js';
import * as kubernetes from './kubernetes/index.js';
import { resolveRegistryImage } from './registry.js';

export type { EnvironmentReport } from './docker.js';

export async function inspectEnvironment(target: Target, dependsOn: string[]): Promise<docker.EnvironmentReport> {
  if (target.kind === 'docker') return docker.inspectDockerEnvironment(target, dependsOn);
  return kubernetes.inspectKubernetesEnvironment(target, dependsOn);
}

export async function resolveImage(target: Target, repository: string, version: string): Promise<PinnedImage> {
  if (target.kind === 'docker') return docker.resolveImage(target, repository, version);
  return resolveRegistryImage(repository, version);
}

/** Problems the target finds in the release without changing anything (server-side dry runs). */
export function dryRunRelease(target: Target, image: PinnedImage): Promise<string[]> {
  // The Docker engine has no dry run: the container configuration is checked when it is created.
  if (target.kind === 'docker') return Promise.resolve([]);
  return kubernetes.dryRunRelease(target, image);
}

export async function snapshotRelease(target: Target, deploymentId: string): Promise<ReleaseState> {
  if (target.kind === 'docker') return docker.snapshotRelease(target);
  return kubernetes.createRollbackPoint(target, deploymentId);
}

export interface ApplyRequest {
  target: Target;
  deploymentId: string;
  version: string;
  image: PinnedImage;
}

export async function applyRelease({ target, ...release }: ApplyRequest): Promise<ReleaseState> {
  if (target.kind === 'docker') return docker.applyRelease({ target, ...release });
  return kubernetes.applyRelease({ target, ...release });
}

/** Waits until the applied release serves: the health check for Docker, the rollout for Kubernetes. */
export async function awaitReady(target: Target, check: HealthCheckSpec): Promise<string> {
  if (target.kind === 'docker') return awaitHealthy({ check, host: target.hostIp, port: target.hostPort });
  return kubernetes.awaitRollout(target, { timeoutMs: check.healthyWithin });
}

export interface RestoreRequest {
  target: Target;
  to: ReleaseState;
  /** Keep the release being replaced as a rollback point (manual rollback) or remove it (failed deploy). */
  keepCurrent: boolean;
}

export async function restoreRelease({ target, ...request }: RestoreRequest): Promise<ReleaseState> {
  if (target.kind === 'docker') return docker.restoreRelease({ target, ...request });
  return kubernetes.restoreRelease({ target, ...request });
}

export async function verifyRelease(target: Target, expected: ReleaseState): Promise<ConsistencyReport> {
  if (target.kind === 'docker') return docker.verifyRelease(target, expected);
  return kubernetes.verifyRelease(target, expected);
}

export async function findKeptRelease(target: Target, deploymentId?: string): Promise<ReleaseState> {
  if (target.kind === 'docker') return docker.findKeptRelease(target, deploymentId);
  return kubernetes.findRevision(target, deploymentId);
}

export async function pruneHistory(target: Target): Promise<string[]> {
  if (target.kind === 'docker') return docker.pruneHistory(target);
  // Revisions are pruned to historyLimit when a rollback point is stored.
  return Promise.resolve([]);
}

/** What going from one release to another changes, for reports; a release without handle is the live one. */
export function diffRelease(target: Target, from: ReleaseState, to: ReleaseState): Promise<ReleaseDiff> {
  if (target.kind === 'kubernetes') return kubernetes.diffRelease(target, from, to);
  const fields = compareReleases(from, to)
    .checks.filter((c) => !c.equal && (c.field === 'imageDigest' || c.field === 'configHash'))
    .map((c) => c.field);
  const container = `Container/${docker.activeName(target)}`;
  if (!from.present) return Promise.resolve({ added: [container], removed: [], changed: [], unchanged: 0 });
  return Promise.resolve(
    fields.length
      ? { added: [], removed: [], changed: [{ object: container, fields }], unchanged: 0 }
      : { added: [], removed: [], changed: [], unchanged: 1 },
  );
}
