import { condition, setHandler } from '@temporalio/workflow';
import { refuseVote } from '../domain/authorization.js';
import { fail } from '../domain/failures.js';
import { type ApprovalRecord, type Vote, type VoteRequest, voteRequestSchema } from '../domain/deployment.js';
import { describeIssues } from '../domain/spec.js';
import { voteSignal, voteUpdate } from './messages.js';
import type { Runbook } from './runbook.js';

export interface GatePolicy {
  required: number;
  approvers: string[];
  deadlineMs: number;
}

/**
 * The approval gate. Votes arrive as an Update (refused before reaching history when invalid) or as a Signal
 * (an invalid one is kept as a refused attempt); both go through the same authorization check.
 */
export class ApprovalGate {
  private open = false;
  private readonly deadlineMs: number;
  readonly record: ApprovalRecord;

  constructor(
    private readonly runbook: Runbook,
    policy: GatePolicy,
  ) {
    this.record = { required: policy.required, approvers: policy.approvers, votes: [], refused: [] };
    runbook.status.approval = this.record;
    this.deadlineMs = policy.deadlineMs;
    setHandler(voteUpdate, (vote) => this.count(vote, 'update'), {
      validator: (vote) => {
        const reason = this.refusal(vote);
        if (reason) throw new Error(reason);
      },
    });
    setHandler(voteSignal, (vote) => {
      const reason = this.refusal(vote);
      if (reason) this.record.refused.push({ ...this.stamp(vote, 'signal'), reason });
      else this.count(vote, 'signal');
    });
  }

  private refusal(vote: unknown): string | undefined {
    const parsed = voteRequestSchema.safeParse(vote);
    if (!parsed.success) return `invalid vote: ${describeIssues(parsed.error.issues).join('; ')}`;
    const { status } = this.runbook;
    return refuseVote(
      {
        open: this.open,
        phase: status.phase,
        environment: status.environment,
        requestedBy: status.requestedBy,
        approvers: this.record.approvers,
        votes: this.record.votes,
      },
      parsed.data,
    );
  }

  /** A vote as recorded; a refused Signal's payload may be anything, so nothing here may throw. */
  private stamp(vote: VoteRequest, via: Vote['via']): Vote {
    const { approver, decision, comment } = (vote ?? {}) as Partial<Record<keyof VoteRequest, unknown>>;
    return {
      approver: asText(approver),
      decision: decision === 'approve' ? 'approve' : 'reject',
      comment: typeof comment === 'string' ? comment.slice(0, 2000) : undefined,
      at: new Date().toISOString(),
      via,
    };
  }

  private count(vote: VoteRequest, via: Vote['via']): ApprovalRecord {
    this.record.votes.push(this.stamp(vote, via));
    return this.record;
  }

  private get rejectedBy(): Vote | undefined {
    return this.record.votes.find((v) => v.decision === 'reject');
  }

  private get approvals(): number {
    return this.record.votes.filter((v) => v.decision === 'approve').length;
  }

  /** Waits for enough approvals; a rejection or the deadline ends the deployment without touching the target. */
  async passed(): Promise<string> {
    this.record.deadline = new Date(Date.now() + this.deadlineMs).toISOString();
    this.open = true;
    this.runbook.setState('awaiting-approval');
    try {
      await condition(() => this.rejectedBy !== undefined || this.approvals >= this.record.required, this.deadlineMs);
    } finally {
      this.open = false;
      this.runbook.setState('running');
    }
    // Decided by the votes counted, not by which fired first: the last approval and the deadline can land in one task.
    const rejection = this.rejectedBy;
    if (rejection)
      throw fail('rejected', `rejected by ${rejection.approver}${rejection.comment ? `: ${rejection.comment}` : ''}`);
    if (this.approvals < this.record.required)
      throw fail(
        'expired',
        `approval deadline ${this.record.deadline} passed with ${this.approvals} of ${this.record.required} approvals`,
      );
    return `approved by ${this.record.votes.map((v) => v.approver).join(', ')}`;
  }
}

/** Any value as bounded text, without calling anything it defines (a hostile toString would throw). */
function asText(value: unknown): string {
  if (typeof value === 'string') return value.slice(0, 200);
  try {
    return (JSON.stringify(value) ?? typeof value).slice(0, 200);
  } catch {
    return `(${typeof value})`;
  }
}
