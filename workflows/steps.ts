/** The steps both runbooks take against a target, each an activity call with its own timeouts and retries. */
import { ActivityCancellationType, CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { DeploymentState } from '../domain/deployment.js';
import { formatDuration } from '../domain/duration.js';
import { fail, NON_RETRYABLE_TYPES } from '../domain/failures.js';
import type { ConsistencyReport, PinnedImage, ReleaseState } from '../domain/release.js';
import { type Target, targetOf } from '../domain/target.js';
import { formatProblem, legacySecretEnvProblems, specProblems, type ServiceEnvironment } from '../domain/spec.js';
import { describeFinding, type SecuritySettings } from '../domain/security.js';
import { secretProblems } from '../domain/secrets.js';
import { type Runbook, withinBudget } from './runbook.js';

/** Quick looks at a target: an unreachable one is retried briefly, then reported as unreachable. */
const look = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumAttempts: 3,
    nonRetryableErrorTypes: NON_RETRYABLE_TYPES,
  },
});

/**
 * The verification that closes a restore: a target that does not answer is asked again until the phase's budget
 * cancels it, like the change before it, rather than failing a restore that worked after a few seconds.
 */
const confirm = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '10s',
    nonRetryableErrorTypes: NON_RETRYABLE_TYPES,
  },
});

/** Patch: a cancelled change is waited for until it has stopped, so that compensation never runs beside it. */
export const WAIT_FOR_STOPPED_CHANGES = 'wait-for-stopped-changes';

/**
 * Changes to a target: retried until the phase's budget cancels them, which is safe because they are idempotent.
 * They heartbeat before every change they make (no engine or API call lasts 30 s), and a cancellation is complete
 * only once the activity has stopped: the next step must not touch the target while a change is still under way.
 */
function change() {
  return proxyActivities<Activities>({
    // A Kubernetes restore waits for the restored rollout (up to 2 minutes) inside the call.
    startToCloseTimeout: '3m',
    heartbeatTimeout: '30s',
    cancellationType: patched(WAIT_FOR_STOPPED_CHANGES)
      ? ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
      : ActivityCancellationType.TRY_CANCEL,
    retry: {
      initialInterval: '1s',
      backoffCoefficient: 2,
      maximumInterval: '10s',
      nonRetryableErrorTypes: NON_RETRYABLE_TYPES,
    },
  });
}

export const { trackChanges, publishReport } = look;
export const { findKeptRelease, pruneHistory } = look;

/** Patch: a budget covers a whole change of the target, from its rollback point to the verified release. */
export const BUDGETS_ARE_TOTALS = 'budgets-are-totals';

export interface ChangeBudget {
  /** The phase that records the total against its budget. */
  phase: 'environment-update' | 'rollback';
  budgetMs: number;
}

export interface ChangeOutcome {
  rollbackPoint: ReleaseState;
  /** Why the change failed after the rollback point was taken: compensation restores it. */
  failure?: unknown;
}

/**
 * Takes the rollback point, then makes the change, all within one budget. A failure before the rollback point is
 * thrown (nothing was touched); one after it is returned with the rollback point, for compensation.
 */
export async function changeTarget(
  runbook: Runbook,
  budget: ChangeBudget,
  target: Target,
  change: (rollbackPoint: ReleaseState) => Promise<void>,
): Promise<ChangeOutcome> {
  const takeRollbackPoint = async (budgetMs?: number) => {
    const point = await runbook.phase(
      'rollback-point',
      budgetMs,
      () => snapshotRelease(target, runbook.status.deploymentId),
      (kept) => (kept.present ? `kept ${kept.version ?? kept.handle?.slice(0, 12)}` : 'nothing deployed yet'),
    );
    runbook.status.previous = point;
    return point;
  };
  if (!patched(BUDGETS_ARE_TOTALS)) {
    // Runs that reached this point before: the rollback point had a budget of its own, then the change another.
    const rollbackPoint = await takeRollbackPoint(budget.budgetMs);
    const label = budget.phase === 'rollback' ? 'rollback' : 'environment update';
    return withinBudget(label, budget.budgetMs, () => change(rollbackPoint)).then(
      () => ({ rollbackPoint }),
      (failure: unknown) => ({ rollbackPoint, failure }),
    );
  }
  let taken: ReleaseState | undefined;
  try {
    const rollbackPoint = await runbook.phase(budget.phase, budget.budgetMs, async () => {
      const point = (taken = await takeRollbackPoint());
      await change(point);
      return point;
    });
    return { rollbackPoint };
  } catch (failure) {
    if (!taken) throw failure;
    return { rollbackPoint: taken, failure };
  }
}

/** The rollback point: stored by the target before anything changes, so it is a change-class call. */
function snapshotRelease(target: Target, deploymentId: string): Promise<ReleaseState> {
  return change().snapshotRelease(target, deploymentId);
}

/** Configuration, permission, environment compatibility and dependency checks; all problems reported at once. */
export async function validateTarget(runbook: Runbook, target: ServiceEnvironment): Promise<ReleaseState> {
  const record = (check: string, problems: string[], ok: string) => {
    runbook.status.checks.push({ check, passed: problems.length === 0, detail: problems.join('; ') || ok });
    return problems;
  };
  // Runs from before the security rules checked secret-looking names here; the rules do it now, per environment.
  const legacy = patched(SECURITY_RULES) ? [] : legacySecretEnvProblems(target.spec);
  const problems = record(
    'configuration and security policy',
    [...specProblems(target.spec), ...legacy].map(formatProblem),
    'spec satisfies policy',
  );
  // Recorded only for specs that name secrets, so the checks of every other run stay as they were (runs started
  // before secrets existed carry specs without the field).
  if (Object.keys(target.spec.container.secrets ?? {}).length)
    problems.push(
      ...record('secrets by reference', secretProblems(target).map(formatProblem), 'defined for this service here'),
    );
  const environment = await look.inspectEnvironment(targetOf(target), target.spec.dependsOn);
  const compatibility = environment.problems.filter((p) => !p.startsWith('dependency'));
  const dependencies = environment.problems.filter((p) => p.startsWith('dependency'));
  problems.push(...record('environment compatibility', compatibility, environment.description));
  const dependsOn = target.spec.dependsOn.join(', ');
  problems.push(...record('dependencies', dependencies, dependsOn ? `running: ${dependsOn}` : 'none declared'));
  if (problems.length) throw fail('invalid', problems.join('; '));
  return environment.current;
}

/** Patch: the security rules judge the release at validation (they replaced the spec's secret-name check). */
export const SECURITY_RULES = 'security-rules';

/** The security rules over what the release would create: a denied finding makes the release invalid. */
async function checkSecurity(runbook: Runbook, request: Parameters<Activities['checkSecurity']>[0]): Promise<void> {
  const findings = await look.checkSecurity(request);
  runbook.status.securityFindings = findings;
  const denied = findings.filter((f) => f.action === 'deny').map(describeFinding);
  const warned = findings.filter((f) => f.action === 'warn').map(describeFinding);
  runbook.status.checks.push({
    check: 'security rules',
    passed: denied.length === 0,
    detail: [...denied, ...warned.map((w) => `warning: ${w}`)].join('; ') || 'no findings',
  });
  if (denied.length) throw fail('invalid', `refused by the security rules: ${denied.join('; ')}`);
}

/** Dependency and admission checks of the release itself: its image pinned by digest, then a dry run. */
export async function checkRelease(
  runbook: Runbook,
  target: Target,
  repository: string,
  version: string,
  security?: SecuritySettings,
): Promise<PinnedImage> {
  const check = (name: string, passed: boolean, detail: string) =>
    runbook.status.checks.push({ check: name, passed, detail });
  let image: PinnedImage;
  try {
    image = await look.resolveImage(target, repository, version);
  } catch (error) {
    check('image pinned by digest', false, `${repository}:${version} not resolvable`);
    throw error;
  }
  check('image pinned by digest', true, image.reference);
  if (security && patched(SECURITY_RULES)) await checkSecurity(runbook, { target, image, version, settings: security });
  const problems = await look.dryRunRelease(target, image);
  check('dry run on the target', problems.length === 0, problems.join('; ') || 'accepted');
  if (problems.length) throw fail('invalid', problems.join('; '));
  return image;
}

export async function applyAndAwaitReady(
  runbook: Runbook,
  service: ServiceEnvironment,
  rollbackPoint: ReleaseState,
  release: { deploymentId: string; version: string; image: PinnedImage },
): Promise<void> {
  const target = targetOf(service);
  const applied = await runbook.phase(
    'apply',
    undefined,
    () => change().applyRelease({ target, ...release }),
    ({ previousStopMs }) =>
      `applied ${release.image.reference}` +
      (previousStopMs === undefined ? '' : `; the release before took ${formatDuration(previousStopMs)} to stop`),
  );
  runbook.status.applied = applied;
  // Read while the new release is live: after a restore it would read the rollback point again.
  runbook.status.objectChanges = await look.diffRelease(target, rollbackPoint, applied).catch((error: unknown) => {
    runbook.status.errors.push(`object changes: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  });
  await runbook.phase(
    'verify',
    undefined,
    () => awaitReady(service),
    (detail) => detail,
  );
}

/** Health check (Docker) or rollout (Kubernetes): heartbeating, so a stuck wait is noticed and cancellable. */
export function awaitReady(service: ServiceEnvironment): Promise<string> {
  const check = service.spec.healthCheck;
  return proxyActivities<Activities>({
    startToCloseTimeout: check.healthyWithin + 30_000,
    heartbeatTimeout: check.interval + check.timeout + 10_000,
    retry: { maximumAttempts: 2, nonRetryableErrorTypes: NON_RETRYABLE_TYPES },
  }).awaitReady(targetOf(service), check);
}

/** Brings back `to` exactly and proves it: the data-consistency verification every restore ends with. */
export async function restoreAndVerify(
  target: Target,
  to: ReleaseState,
  keepCurrent: boolean,
): Promise<ConsistencyReport> {
  await change().restoreRelease({ target, to, keepCurrent });
  const consistency = await confirm.verifyRelease(target, to);
  if (!consistency.consistent) {
    const differences = consistency.checks
      .filter((c) => !c.equal)
      .map((c) => `${c.field} is ${c.actual}, expected ${c.expected}`);
    throw fail('inconsistent', `live state differs from the rollback point: ${differences.join('; ')}`, consistency);
  }
  return consistency;
}

/** Patch: the report is written even when the deployment was cancelled. */
export const REPORT_AFTER_CANCEL = 'report-after-cancel';

/** Report generation never changes how a deployment ended; a failure to publish is recorded in the status. */
export async function finishAndReport(runbook: Runbook, state: DeploymentState, budgetMs: number): Promise<void> {
  runbook.finish(state);
  const report = async () => {
    try {
      runbook.status.reportPath = await runbook.phase(
        'report',
        budgetMs,
        () => publishReport(runbook.status),
        (p) => p,
      );
    } catch {
      // already recorded in the status by the phase
    }
  };
  // A cancelled workflow still owes its report: who changed what, and how it ended.
  if (patched(REPORT_AFTER_CANCEL)) await CancellationScope.nonCancellable(report);
  else await report();
}
