import { allHandlersFinished, CancellationScope, condition, upsertSearchAttributes } from '@temporalio/workflow';
import type { DeploymentState, DeploymentStatus } from '../domain/deployment.js';
import { stateForFailure } from '../domain/failures.js';
import type { LegacyRollbackRequest, RollbackRequest } from '../domain/requests.js';
import { type Budgets, DEFAULT_BUDGETS } from '../domain/spec.js';
import { targetOf } from '../domain/target.js';
import { rollbackIntake } from './admission.js';
import { ApprovalGate } from './approval-gate.js';
import { Compensation } from './compensation.js';
import { deploymentSearchAttributes } from './messages.js';
import { describeError, Runbook } from './runbook.js';
import {
  awaitReady,
  changeTarget,
  findKeptRelease,
  finishAndReport,
  restoreAndVerify,
  validateTarget,
} from './steps.js';

/**
 * Manual rollback to the previous release or to the one a named deployment applied, authorized where the
 * environment demands it, within the rollback budget, ending with the same consistency check as compensation.
 */
export async function rollbackWorkflow(input: RollbackRequest | LegacyRollbackRequest): Promise<DeploymentStatus> {
  const intake = rollbackIntake(input);
  const runbook = new Runbook(intake.init);
  let budgets: Budgets = DEFAULT_BUDGETS;
  let state: DeploymentState;
  try {
    const { target, verifier } = await intake.admit(runbook);
    const { settings } = target;
    budgets = target.budgets;
    const destination = targetOf(target);
    const gate = new ApprovalGate(
      runbook,
      {
        required: settings.rollbackRequiresApproval ? 1 : 0,
        approvers: settings.approval.approvers,
        deadlineMs: settings.approval.deadline,
      },
      verifier,
    );
    const compensation = new Compensation(runbook, destination, budgets.rollback, target, verifier);
    const wanted = await runbook.phase(
      'validate',
      budgets.validate,
      async () => {
        await validateTarget(runbook, target);
        return findKeptRelease(destination, intake.toDeploymentId);
      },
      (kept) => `rolling back to ${kept.version ?? '?'} from deployment ${kept.deploymentId ?? '?'}`,
    );
    runbook.status.version = wanted.version;
    if (wanted.version) upsertSearchAttributes(deploymentSearchAttributes({ version: wanted.version }));

    if (settings.rollbackRequiresApproval)
      await runbook.phase(
        'authorization',
        undefined,
        () => gate.passed(),
        (w) => w,
      );
    else runbook.skip('authorization', `not required in ${target.environment}`);

    const { rollbackPoint, failure } = await changeTarget(
      runbook,
      { phase: 'rollback', budgetMs: budgets.rollback },
      destination,
      async () => {
        runbook.status.applied = wanted;
        await runbook.phase(
          'restore',
          undefined,
          () => restoreAndVerify(destination, wanted, true),
          () => 'consistency verified',
        );
        await runbook.phase(
          'verify',
          undefined,
          () => awaitReady(target),
          (detail) => detail,
        );
      },
    );
    if (failure === undefined) state = 'succeeded';
    else state = await compensation.restore(rollbackPoint, `rollback failed: ${describeError(failure)}`, true);
  } catch (error) {
    state = stateForFailure(error);
  }
  await finishAndReport(runbook, state, budgets.report);
  // A vote or resolve still being verified gets its answer before the run ends.
  await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  return runbook.status;
}
