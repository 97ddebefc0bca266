/**
 * The target operations as activities: each looks up the driver of its target and calls it. Workflows see only these
 * names, which are stored in histories, so they stay stable whatever the drivers become.
 */
import type { ReleasePlan } from '../../domain/plan.js';
import type { ConsistencyReport, PinnedImage, ReleaseDiff, ReleaseState } from '../../domain/release.js';
import type { HealthCheckSpec } from '../../domain/spec.js';
import {
  type ApplyRequest,
  chooseKeptRelease,
  type EnvironmentReport,
  type RestoreRequest,
  type Target,
} from '../../domain/target.js';
import { driverFor } from './driver.js';

export function inspectEnvironment(target: Target, dependsOn: string[]): Promise<EnvironmentReport> {
  return driverFor(target).inspect(dependsOn);
}

export function resolveImage(target: Target, repository: string, version: string): Promise<PinnedImage> {
  return driverFor(target).resolveImage(repository, version);
}

export function dryRunRelease(target: Target, image: PinnedImage): Promise<string[]> {
  return driverFor(target).dryRun(image);
}

/** What approvers vote on: the content hash apply is held to, and the changes against what runs now. */
export function planRelease(target: Target, image: PinnedImage): Promise<ReleasePlan> {
  return driverFor(target).plan(image);
}

export function snapshotRelease(target: Target, deploymentId: string): Promise<ReleaseState> {
  return driverFor(target).snapshot(deploymentId);
}

export function applyRelease({ target, ...release }: ApplyRequest): Promise<ReleaseState> {
  return driverFor(target).apply(release);
}

export function awaitReady(target: Target, check: HealthCheckSpec): Promise<string> {
  return driverFor(target).awaitReady(check);
}

export function restoreRelease({ target, to, keepCurrent }: RestoreRequest): Promise<ReleaseState> {
  return driverFor(target).restore(to, { keepCurrent });
}

export function verifyRelease(target: Target, expected: ReleaseState): Promise<ConsistencyReport> {
  return driverFor(target).verify(expected);
}

/** A kept release: the one a deployment applied, or the previous one. */
export async function findKeptRelease(target: Target, deploymentId?: string): Promise<ReleaseState> {
  return chooseKeptRelease(await driverFor(target).keptReleases(), deploymentId);
}

export function pruneHistory(target: Target): Promise<string[]> {
  return driverFor(target).prune();
}

/** A release without handle is the live one. */
export function diffRelease(target: Target, from: ReleaseState, to: ReleaseState): Promise<ReleaseDiff> {
  return driverFor(target).diff(from, to);
}
