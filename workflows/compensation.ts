import { CancellationScope, condition, setHandler } from '@temporalio/workflow';
import { refuseResolver } from '../domain/authorization.js';
import {
  type CompensationDecision,
  compensationDecisionSchema,
  resolveRequestSchema,
  type RollbackReport,
} from '../domain/deployment.js';
import { describeIdentity, type Identity } from '../domain/identity.js';
import type { ConsistencyReport, ReleaseState } from '../domain/release.js';
import { applicationFailureIn, fail } from '../domain/failures.js';
import type { Target } from '../domain/target.js';
import { describeIssues, type ServiceEnvironment } from '../domain/spec.js';
import type { Verifier } from './admission.js';
import { resolveCompensationUpdate } from './messages.js';
import { describeError, type Runbook } from './runbook.js';
import { restoreAndVerify } from './steps.js';

/**
 * Compensation after the target was touched: restore the rollback point and verify it, in a scope nothing can
 * cancel. When that fails the deployment stays open as "compensation-failed" until an operator retries or abandons.
 */
export class Compensation {
  private decision: CompensationDecision | undefined;
  /** Resolves wait their turn: the first to arrive is the first judged. */
  private turn: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly runbook: Runbook,
    private readonly target: Target,
    private readonly budgetMs: number,
    private readonly environment: ServiceEnvironment,
    verifier: Verifier,
  ) {
    const refusal = (payload: unknown, schema: typeof resolveRequestSchema | typeof compensationDecisionSchema) => {
      const parsed = schema.safeParse(payload);
      if (!parsed.success) return `invalid decision: ${describeIssues(parsed.error.issues).join('; ')}`;
      if (this.runbook.status.state !== 'compensation-failed')
        return `nothing to resolve: the deployment is ${this.runbook.status.state}`;
      // Two answers in one workflow task: the first one counts, the second is told so.
      if (this.decision) return `already resolved: ${this.decision.action} by ${this.decision.operator}`;
      return undefined;
    };
    const validator =
      (schema: typeof resolveRequestSchema | typeof compensationDecisionSchema) => (payload: unknown) => {
        const reason = refusal(payload, schema);
        if (reason) throw new Error(reason);
      };
    if (verifier.kind === 'legacy') {
      setHandler(resolveCompensationUpdate, (decision) => this.decide(decision as CompensationDecision), {
        validator: validator(compensationDecisionSchema),
      });
      return;
    }
    setHandler(
      resolveCompensationUpdate,
      (payload) => {
        // Answers are taken in the order they arrived, each about the failure that was showing then: a later one,
        // or one verified after another restore attempt, does not overtake or outlive it.
        const attempt = this.runbook.status.rollback?.attempts;
        const answer = this.turn.then(() => this.resolveProven(payload, attempt, verifier, refusal));
        this.turn = answer.catch(() => undefined);
        return answer;
      },
      { validator: validator(resolveRequestSchema) },
    );
  }

  private async resolveProven(
    payload: unknown,
    attempt: number | undefined,
    verifier: Extract<Verifier, { kind: 'proven' }>,
    refusal: (payload: unknown, schema: typeof resolveRequestSchema) => string | undefined,
  ): Promise<string> {
    const { action, reason, credential } = resolveRequestSchema.parse(payload);
    const refuse = (actor: string, why: string) => {
      this.runbook.audit('resolve', 'refused', actor, `${action}: ${why}`);
      return fail('forbidden', `resolve refused: ${why}`);
    };
    let operator: Identity;
    try {
      operator = await verifier.verify(credential, verifier.maxVoteTokenAgeMs);
    } catch (error) {
      throw refuse('(unproven)', describeError(error));
    }
    const who = describeIdentity(operator);
    const stale =
      this.runbook.status.rollback?.attempts === attempt
        ? undefined
        : 'the compensation was attempted again since this answer was sent';
    const forbidden =
      refuseResolver(this.environment.environment, this.environment.settings, operator) ??
      refusal(payload, resolveRequestSchema) ??
      stale;
    if (forbidden) throw refuse(who, forbidden);
    return this.decide({ action, operator: who, reason });
  }

  private decide(decision: CompensationDecision): string {
    this.decision = decision;
    this.runbook.audit(
      'resolve',
      'accepted',
      decision.operator,
      `${decision.action}${decision.reason ? `: ${decision.reason}` : ''}`,
    );
    return `${decision.action} accepted from ${decision.operator}`;
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
