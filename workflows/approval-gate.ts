import { type ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { bounded, MAX_REFUSED_KEPT } from '../domain/audit.js';
import { refuseVote } from '../domain/authorization.js';
import { fail } from '../domain/failures.js';
import {
  type ApprovalRecord,
  type Decision,
  legacyVoteRequestSchema,
  type Vote,
  voteRequestSchema,
} from '../domain/deployment.js';
import { describeIdentity, type Identity } from '../domain/identity.js';
import { describeIssues } from '../domain/spec.js';
import type { Verifier } from './admission.js';
import { voteSignal, voteUpdate } from './messages.js';
import type { Runbook } from './runbook.js';

export interface GatePolicy {
  required: number;
  /** Users and `group:<name>` principals. */
  approvers: string[];
  deadlineMs: number;
}

/**
 * The approval gate. A vote is an Update carrying a token: malformed ones are refused before they reach history;
 * the others are counted only once the worker has verified the token and the policy names the voter. A Signal
 * cannot carry a proof the gate could answer about, so a vote by Signal is recorded as refused.
 * Runs started before identities were proven keep the votes of their time: a named approver, Update or Signal.
 */
export class ApprovalGate {
  private open = false;
  private readonly deadlineMs: number;
  private readonly usedTokenIds: string[] = [];
  /** The content validation computed: an approval counts only when it names it. Unset in runs from before. */
  private contentHash?: string;
  /** Votes whose token is being verified: the gate decides only once they are counted or refused. */
  private verifying = 0;
  readonly record: ApprovalRecord;

  constructor(
    private readonly runbook: Runbook,
    policy: GatePolicy,
    private readonly verifier: Verifier,
  ) {
    this.record = { required: policy.required, approvers: policy.approvers, votes: [], refused: [] };
    runbook.status.approval = this.record;
    this.deadlineMs = policy.deadlineMs;
    if (verifier.kind === 'legacy') this.acceptNamedVotes();
    else this.acceptProvenVotes(verifier);
  }

  private acceptProvenVotes(verifier: Extract<Verifier, { kind: 'proven' }>): void {
    setHandler(
      voteUpdate,
      async (vote) => {
        const { decision, comment, credential, contentHash } = voteRequestSchema.parse(vote);
        let voter: Identity;
        this.verifying += 1;
        try {
          voter = await verifier.verify(credential, verifier.maxVoteTokenAgeMs);
        } catch (error) {
          throw this.refuse({ user: UNPROVEN, decision, comment }, 'update', messageOf(error));
        } finally {
          this.verifying -= 1;
        }
        const ballot = { user: voter.user, actor: describeIdentity(voter), decision, comment };
        const reason = this.judge(voter, decision) ?? this.refuseContent(decision, contentHash);
        // A token counts once, whether its vote was counted or refused.
        if (voter.tokenId) this.usedTokenIds.push(voter.tokenId);
        if (reason) throw this.refuse(ballot, 'update', reason);
        return this.count(ballot, 'update');
      },
      {
        validator: (vote) => {
          const parsed = voteRequestSchema.safeParse(vote);
          if (!parsed.success) throw new Error(`invalid vote: ${describeIssues(parsed.error.issues).join('; ')}`);
          if (!this.open) throw new Error(`not awaiting approval (current phase: ${this.runbook.status.phase})`);
        },
      },
    );
    setHandler(voteSignal, (vote) => {
      const claimed = this.unproven(vote);
      // Whoever the Signal names proved nothing: the audit names nobody, the record keeps the claim.
      this.refuse(
        { ...claimed, actor: UNPROVEN },
        'signal',
        `a vote by Signal carries no proof of identity (it claimed to be ${claimed.user}); vote with ` +
          '`deploy-agent approve` or `reject`',
      );
    });
  }

  private acceptNamedVotes(): void {
    const refusal = (vote: unknown) => {
      const parsed = legacyVoteRequestSchema.safeParse(vote);
      if (!parsed.success) return `invalid vote: ${describeIssues(parsed.error.issues).join('; ')}`;
      return this.judge({ user: parsed.data.approver, groups: [], proof: 'insecure-dev' }, parsed.data.decision);
    };
    setHandler(voteUpdate, (vote) => this.count(this.unproven(vote), 'update'), {
      validator: (vote) => {
        const reason = refusal(vote);
        if (reason) throw new Error(reason);
      },
    });
    setHandler(voteSignal, (vote) => {
      const reason = refusal(vote);
      if (reason) this.refuse(this.unproven(vote), 'signal', reason);
      else this.count(this.unproven(vote), 'signal');
    });
  }

  /** Binds approvals to the release's content: from now on an approval must carry this hash. */
  bind(contentHash: string): void {
    this.contentHash = contentHash;
  }

  /** Why an approval does not cover the validated content; a rejection changes nothing, so it needs no hash. */
  private refuseContent(decision: Decision, approved: string | undefined): string | undefined {
    const validated = this.contentHash;
    if (validated === undefined || decision !== 'approve' || approved === validated) return undefined;
    if (approved === undefined)
      return (
        `an approval must name the content it approves: the validated content is ${validated} ` +
        '(`deploy-agent approve` sends it after showing the plan; automation passes --content-hash)'
      );
    return `the vote approves content ${approved}, but the validated content is ${validated}: read the plan again with \`deploy-agent status\``;
  }

  private judge(voter: Identity, decision: Decision): string | undefined {
    const { status } = this.runbook;
    return refuseVote(
      {
        open: this.open,
        phase: status.phase,
        environment: status.environment,
        requestedBy: this.runbook.requester,
        approvers: this.record.approvers,
        votes: this.record.votes,
        usedTokenIds: this.usedTokenIds,
      },
      voter,
      decision,
    );
  }

  /** What a payload that may be anything says, read without calling anything it defines. */
  private unproven(vote: unknown): Ballot {
    const { approver, decision, comment } = (typeof vote === 'object' && vote !== null ? vote : {}) as Record<
      string,
      unknown
    >;
    return {
      user: asText(approver),
      decision: decision === 'approve' ? 'approve' : 'reject',
      comment: typeof comment === 'string' ? comment : undefined,
    };
  }

  private stamp({ user, decision, comment }: Ballot, via: Vote['via']): Vote {
    return {
      approver: bounded(user),
      decision,
      comment: comment === undefined ? undefined : bounded(comment, 2000),
      at: new Date().toISOString(),
      via,
    };
  }

  /** Records a refused vote (a bounded number of them) and its audit event; the error answers the voter. */
  private refuse(ballot: Ballot, via: Vote['via'], reason: string): ApplicationFailure {
    if (this.record.refused.length < MAX_REFUSED_KEPT)
      this.record.refused.push({ ...this.stamp(ballot, via), reason: bounded(reason, 500) });
    this.runbook.audit('vote', 'refused', ballot.actor ?? ballot.user, `${ballot.decision} by ${via}: ${reason}`);
    return fail('forbidden', `vote refused: ${reason}`);
  }

  private count(ballot: Ballot, via: Vote['via']): ApprovalRecord {
    this.record.votes.push(this.stamp(ballot, via));
    this.runbook.audit('vote', 'accepted', ballot.actor ?? ballot.user, `${ballot.decision} by ${via}`);
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
      // A vote the gate took in before the deadline is decided on before the gate closes.
      await condition(() => this.verifying === 0);
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

const UNPROVEN = '(unproven)';

interface Ballot {
  /** The voter's name, as the votes record it. */
  user: string;
  /** Who the audit names: the proven identity as reports show it; the name itself when none was proven. */
  actor?: string;
  decision: Decision;
  comment?: string;
}

/** Any value as bounded text, without calling anything it defines (a hostile toString would throw). */
function asText(value: unknown): string {
  if (typeof value === 'string') return bounded(value);
  try {
    return bounded(JSON.stringify(value) ?? typeof value);
  } catch {
    return `(${typeof value})`;
  }
}

function messageOf(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return error instanceof Error ? error.message : String(error);
}
