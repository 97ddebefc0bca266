import { CancellationScope, condition, setHandler } from '@temporalio/workflow';
import { type CompensationDecision, compensationDecisionSchema, type RollbackReport } from '../domain/deployment.js';
import type { ConsistencyReport, ReleaseState } from '../domain/release.js';
import { applicationFailureIn } from '../domain/failures.js';
import type { Target } from '../domain/target.js';
import { describeIssues } from '../domain/spec.js';
import { resolveCompensationUpdate } from './messages.js';
import { describeError, type Runbook } from './runbook.js';
import { restoreAndVerify } from './steps.js';

/**
 * Compensation after the target was touched: restore the rollback point and verify it, in a scope nothing can
 * cancel. When that fails the deployment stays open as "compensation-failed" until an operator retries or abandons.
 */
export class Compensation {
  private decision: CompensationDecision | undefined;

  constructor(
    private readonly runbook: Runbook,
    private readonly target: Target,
    private readonly budgetMs: number,
  ) {
    setHandler(
      resolveCompensationUpdate,
      (decision) => {
        this.decision = decision;
        return `${decision.action} accepted from ${decision.operator}`;
      },
      {
        validator: (decision) => {
          const parsed = compensationDecisionSchema.safeParse(decision);
          if (!parsed.success) throw new Error(`invalid decision: ${describeIssues(parsed.error.issues).join('; ')}`);
          if (this.runbook.status.state !== 'compensation-failed')
            throw new Error(`nothing to resolve: the deployment is ${this.runbook.status.state}`);
          // Two answers in one workflow task: the first one counts, the second is told so.
          if (this.decision) throw new Error(`already resolved: ${this.decision.action} by ${this.decision.operator}`);
        },
      },
    );
  }

  /** Returns how the deployment ends: rolled back, or abandoned by an operator. */
  async restore(to: ReleaseState, reason: string, keepCurrent: boolean): Promise<'rolled-back' | 'abandoned'> {
    const report: RollbackReport = { reason, restoredTo: to, attempts: 0, errors: [], operatorDecisions: [] };
    this.runbook.status.rollback = report;
    return CancellationScope.nonCancellable(async () => {
      for (;;) {
        this.runbook.setState('compensating');
        report.attempts += 1;
        try {
          report.consistency = await this.runbook.phase(
            'compensate',
            this.budgetMs,
            () => restoreAndVerify(this.target, to, keepCurrent),
            () => 'rollback point restored; live state verified equal',
          );
          return 'rolled-back';
        } catch (error) {
          report.errors.push(describeError(error));
          report.consistency =
            (applicationFailureIn(error)?.details?.[0] as ConsistencyReport | undefined) ?? report.consistency;
          this.decision = undefined;
          this.runbook.setState('compensation-failed');
          await condition(() => this.decision !== undefined);
          const decision = this.decision as unknown as CompensationDecision;
          report.operatorDecisions.push({ ...decision, at: new Date().toISOString() });
          if (decision.action === 'abandon') return 'abandoned';
        }
      }
    });
  }
}
