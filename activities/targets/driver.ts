/**
 * The target driver: everything a runbook asks of the system a release runs on, one name per operation whatever the
 * target. Each target kind has one implementation in its own folder and one entry in `drivers`; adding a target or a
 * strategy (canary, blue/green) means a new driver, never a new branch in the activities or the workflows.
 */
import type { ReleasePlan } from '../../domain/plan.js';
import type { ConsistencyReport, PinnedImage, ReleaseDiff, ReleaseState } from '../../domain/release.js';
import type { HealthCheckSpec } from '../../domain/spec.js';
import type { ApplyRequest, EnvironmentReport, KeptReleases, Target } from '../../domain/target.js';
import { dockerDriver } from '../docker/driver.js';
import { kubernetesDriver } from '../kubernetes/driver.js';

export interface TargetDriver {
  /** Environment compatibility and dependencies, and what runs now; changes nothing. */
  inspect(dependsOn: string[]): Promise<EnvironmentReport>;
  /** The image of `repository:version` pinned by digest; a missing image is invalid. */
  resolveImage(repository: string, version: string): Promise<PinnedImage>;
  /** Problems the target finds in the release without changing anything (server-side dry runs). */
  dryRun(image: PinnedImage): Promise<string[]>;
  /** The release's content hash and what it changes against what runs now (names and paths, never values). */
  plan(image: PinnedImage): Promise<ReleasePlan>;
  /** The rollback point: what runs now, kept so that restore can bring it back. A retry returns the same point. */
  snapshot(deploymentId: string): Promise<ReleaseState>;
  /** Puts the release live; idempotent, a retry converges on the same end state. */
  apply(release: Omit<ApplyRequest, 'target'>): Promise<ReleaseState>;
  /** Waits until the applied release serves (health check, rollout), heartbeating while it waits. */
  awaitReady(check: HealthCheckSpec): Promise<string>;
  /** Brings back exactly `to` (nothing, when `to` is absent); idempotent. */
  restore(to: ReleaseState, options: { keepCurrent: boolean }): Promise<ReleaseState>;
  /** Data-consistency verification: the live release against the state it must equal. */
  verify(expected: ReleaseState): Promise<ConsistencyReport>;
  /** What going from one release to another changes, for reports: names and field paths, never values. */
  diff(from: ReleaseState, to: ReleaseState): Promise<ReleaseDiff>;
  /** The live release and the releases kept to roll back to, newest first. */
  keptReleases(): Promise<KeptReleases>;
  /** After a successful change: drops kept releases beyond the environment's history limit; returns their names. */
  prune(): Promise<string[]>;
}

type DriverFactories = { [Kind in Target['kind']]: (target: Extract<Target, { kind: Kind }>) => TargetDriver };

const drivers: DriverFactories = { docker: dockerDriver, kubernetes: kubernetesDriver };

/** The single factory: the driver for a target's kind, bound to that target. */
export function driverFor(target: Target): TargetDriver {
  const create = drivers[target.kind] as (target: Target) => TargetDriver;
  return create(target);
}
