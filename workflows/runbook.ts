/** What every deploy and rollback shares: its status record, phases under time budgets, and how failures end it. */
import {
  ActivityFailure,
  CancellationScope,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { type DeploymentState, type DeploymentStatus, deploymentIdOf } from '../domain/deployment.js';
import { fail } from '../domain/failures.js';
import { formatDuration } from '../domain/duration.js';
import { planLines } from '../domain/plan.js';
import { phaseLine } from '../domain/report.js';
import { type AuditEvent, bounded, MAX_REFUSED_KEPT } from '../domain/audit.js';
import { describeIdentity, type Identity } from '../domain/identity.js';
import { deploymentSearchAttributes, statusQuery } from './messages.js';

/** Ends a phase with a budget: the work is cancelled when the timer fires, whatever it was doing. */
export async function withinBudget<T>(what: string, budgetMs: number, work: () => Promise<T>): Promise<T> {
  let expired = false;
  const workScope = new CancellationScope();
  const timerScope = new CancellationScope();
  const timer = timerScope
    .run(() => sleep(budgetMs))
    .then(
      () => {
        expired = true;
        workScope.cancel();
      },
      () => undefined,
    );
  try {
    return await workScope.run(work);
  } catch (error) {
    if (expired) throw fail('budget', `${what} exceeded its budget of ${formatDuration(budgetMs)}`);
    throw error;
  } finally {
    timerScope.cancel();
    await timer;
  }
}

/** One line for a failure, naming the activity that raised it. */
export function describeError(error: unknown): string {
  if (error instanceof ActivityFailure && error.cause)
    return `${error.activityType}: ${error.cause.message || error.cause.name}`;
  return error instanceof Error ? error.message : String(error);
}

export type StatusInit = Omit<
  DeploymentStatus,
  'deploymentId' | 'startedAt' | 'state' | 'phase' | 'phases' | 'errors' | 'checks'
>;

export class Runbook {
  readonly status: DeploymentStatus;
  /** Who asked, as proven at admission: judged against approvers (no self-approval). */
  requester: Identity;

  constructor(init: StatusInit) {
    const { workflowId, runId, startTime } = workflowInfo();
    this.status = {
      ...init,
      deploymentId: deploymentIdOf(workflowId, runId),
      startedAt: startTime.toISOString(),
      state: 'running',
      phase: 'starting',
      phases: [],
      checks: [],
      errors: [],
      audit: [],
    };
    this.requester = { user: init.requestedBy, groups: [], proof: 'insecure-dev' };
    setHandler(statusQuery, () => this.status);
    upsertSearchAttributes(
      deploymentSearchAttributes({
        service: init.service,
        environment: init.environment,
        version: init.version,
        status: 'running',
      }),
    );
  }

  setState(state: DeploymentState): void {
    this.status.state = state;
    upsertSearchAttributes(deploymentSearchAttributes({ status: state }));
    this.showDetails();
  }

  /** Runs one step of the runbook, recorded with its timing against its budget (when it has one). */
  async phase<T>(
    name: string,
    budgetMs: number | undefined,
    work: () => Promise<T>,
    describe?: (result: T) => string,
  ): Promise<T> {
    const record = { name, budgetMs, startedAt: new Date().toISOString(), status: 'running' as const };
    const index = this.status.phases.push(record) - 1;
    this.status.phase = name;
    this.showDetails();
    try {
      const result = budgetMs === undefined ? await work() : await withinBudget(`phase ${name}`, budgetMs, work);
      this.status.phases[index] = {
        ...record,
        endedAt: new Date().toISOString(),
        status: 'succeeded',
        detail: describe?.(result),
      };
      return result;
    } catch (error) {
      const detail = describeError(error);
      this.status.phases[index] = { ...record, endedAt: new Date().toISOString(), status: 'failed', detail };
      this.status.errors.push(`${name}: ${detail}`);
      throw error;
    } finally {
      this.showDetails();
    }
  }

  /** Records a decision: who (as proven), what, and why; bounded, as the actor and reason may come from a requester. */
  audit(action: AuditEvent['action'], outcome: AuditEvent['outcome'], actor: string, reason: string): void {
    const audit = (this.status.audit ??= []);
    if (outcome === 'refused' && audit.filter((e) => e.outcome === 'refused').length >= MAX_REFUSED_KEPT) return;
    audit.push({ at: new Date().toISOString(), action, outcome, actor: bounded(actor), reason: bounded(reason, 500) });
  }

  /** The proven requester, from admission on. */
  admitted(requester: Identity): void {
    this.requester = requester;
    this.status.requestedBy = describeIdentity(requester);
    if (requester.proof !== 'oidc') this.status.unverifiedIdentities = true;
  }

  skip(name: string, detail: string): void {
    const now = new Date().toISOString();
    this.status.phases.push({ name, startedAt: now, endedAt: now, status: 'skipped', detail });
  }

  finish(state: DeploymentState): void {
    this.status.finishedAt = new Date().toISOString();
    this.setState(state);
  }

  /** What the Temporal UI shows as the workflow's current details. */
  private showDetails(): void {
    const s = this.status;
    const head = `**${s.kind} ${s.service} ${s.version ?? ''} → ${s.environment}**: ${s.state}, phase ${s.phase}`;
    // Approvers see what they vote on where they look: the plan, by name and field path, and its content hash.
    const plan = s.plan ? ['', '**Plan** (what an approval covers)', ...planLines(s.plan)] : [];
    setCurrentDetails([head, '', ...s.phases.map((p) => `- ${phaseLine(p)}`), ...plan].join('\n'));
  }
}
