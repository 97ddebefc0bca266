import { allHandlersFinished, CancellationScope, condition, patched } from '@temporalio/workflow';
import type { DeploymentState, DeploymentStatus } from '../domain/deployment.js';
import { isFailureOf, stateForFailure } from '../domain/failures.js';
import type { DeployRequest, LegacyDeployRequest } from '../domain/requests.js';
import { type Budgets, DEFAULT_BUDGETS } from '../domain/spec.js';
import { securitySettingsOf } from '../domain/security.js';
import { targetOf } from '../domain/target.js';
import { deployIntake } from './admission.js';
import { ApprovalGate } from './approval-gate.js';
import { Compensation } from './compensation.js';
import { CONTENT_BOUND_APPROVAL, planRelease } from './plan.js';
import { describeError, Runbook } from './runbook.js';
import {
  applyAndAwaitReady,
  changeTarget,
  finishAndReport,
  checkRelease,
  pruneHistory,
  trackChanges,
  validateTarget,
} from './steps.js';

/**
 * The deploy runbook: admission, validate, track changes, approval gate, rollback point, apply, verify health, report.
 * Any failure after the rollback point restores it and verifies the environment equals it again.
 */
export async function deployWorkflow(input: DeployRequest | LegacyDeployRequest): Promise<DeploymentStatus> {
  const intake = deployIntake(input);
  const version = intake.init.version ?? '';
  const runbook = new Runbook(intake.init);
  let budgets: Budgets = DEFAULT_BUDGETS;
  let state: DeploymentState;
  try {
    const { target, verifier } = await intake.admit(runbook);
    const { settings, spec } = target;
    budgets = target.budgets;
    const destination = targetOf(target);
    const gate = new ApprovalGate(runbook, { ...settings.approval, deadlineMs: settings.approval.deadline }, verifier);
    const compensation = new Compensation(runbook, destination, budgets.rollback, target, verifier);
    const { current, image, plan } = await runbook.phase(
      'validate',
      budgets.validate,
      async () => {
        const current = await validateTarget(runbook, target);
        const image = await checkRelease(
          runbook,
          destination,
          spec.image.repository,
          version,
          securitySettingsOf(settings),
        );
        // Approvers vote on this content, and apply refuses any other; runs from before had neither.
        const plan = patched(CONTENT_BOUND_APPROVAL) ? await planRelease(runbook, destination, image) : undefined;
        return { current, image, plan };
      },
      () => `${runbook.status.checks.length} checks passed`,
    );
    runbook.status.image = image;
    if (plan) {
      runbook.status.plan = plan;
      gate.bind(plan.contentHash);
    }

    if (spec.source) {
      const query = {
        repository: spec.source.repository,
        refPattern: spec.source.ref,
        fromVersion: current.version,
        toVersion: version,
      };
      runbook.status.changes = await runbook.phase(
        'track-changes',
        budgets.trackChanges,
        () => trackChanges(query),
        (changes) => `${changes.commits.length} commits, ${changes.files.length} files`,
      );
    } else runbook.skip('track-changes', 'no source repository in the spec');

    if (settings.approval.required > 0)
      await runbook.phase(
        'approval',
        undefined,
        () => gate.passed(),
        (who) => who,
      );
    else runbook.skip('approval', `not required in ${target.environment}`);

    const release = { deploymentId: runbook.status.deploymentId, version, image, contentHash: plan?.contentHash };
    const { rollbackPoint, failure } = await changeTarget(
      runbook,
      { phase: 'environment-update', budgetMs: budgets.environmentUpdate },
      destination,
      (point) => applyAndAwaitReady(runbook, target, point, release),
    );
    if (failure === undefined) {
      state = 'succeeded';
      await pruneHistory(destination).catch((error: unknown) => {
        runbook.status.errors.push(`prune history: ${describeError(error)}`);
      });
    } else {
      const restored = await compensation.restore(rollbackPoint, `deploy failed: ${describeError(failure)}`, false);
      // Apply refused content nobody approved before changing anything; the restore proved the target as it was.
      state = restored === 'rolled-back' && isFailureOf(failure, 'contentChanged') ? 'invalid' : restored;
    }
  } catch (error) {
    state = stateForFailure(error);
  }
  await finishAndReport(runbook, state, budgets.report);
  // A vote or resolve still being verified gets its answer before the run ends.
  await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  return runbook.status;
}
