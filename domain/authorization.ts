import type { EnvironmentSpec } from './spec.js';
import type { Vote, VoteRequest } from './deployment.js';

export interface VotingContext {
  /** Whether the deployment is waiting at its approval gate right now. */
  open: boolean;
  phase: string;
  environment: string;
  requestedBy: string;
  approvers: readonly string[];
  votes: readonly Vote[];
}

/**
 * The one authorization check for approvals and rollback authorizations, whichever way they arrive.
 * Returns why a vote is refused, or undefined when it counts.
 */
export function refuseVote(context: VotingContext, vote: VoteRequest): string | undefined {
  if (!context.open) return `not awaiting approval (current phase: ${context.phase})`;
  if (vote.decision === 'approve' && vote.approver === context.requestedBy)
    return `${vote.approver} requested this deployment and cannot approve it`;
  if (!context.approvers.includes(vote.approver))
    return `${vote.approver} may not approve in ${context.environment} (approvers: ${context.approvers.join(', ') || 'none'})`;
  if (context.votes.some((v) => v.approver === vote.approver)) return `${vote.approver} has already voted`;
  return undefined;
}

/** Per-environment permission to request deploys and rollbacks. */
export function refuseRequester(environment: string, settings: EnvironmentSpec, user: string): string | undefined {
  if (settings.deployers.length === 0 || settings.deployers.includes(user)) return undefined;
  return `${user} may not deploy to ${environment} (deployers: ${settings.deployers.join(', ')})`;
}
