/**
 * The access-control decisions, pure so that workflows make them deterministically from the policy they started
 * with and the identities the worker proved. Each returns why something is refused, or undefined when it may go on.
 */
import { type Identity, isNamed } from './identity.js';
import { activeFreeze, type EnvironmentPolicy } from './policy.js';
import type { Vote } from './deployment.js';

export interface VotingContext {
  /** Whether the deployment is waiting at its approval gate right now. */
  open: boolean;
  phase: string;
  environment: string;
  requestedBy: Identity;
  approvers: readonly string[];
  votes: readonly Vote[];
  /** Token ids already counted or refused: a vote's token is used once. */
  usedTokenIds: readonly string[];
}

/** The one authorization check for approvals and rollback authorizations. */
export function refuseVote(context: VotingContext, voter: Identity, decision: Vote['decision']): string | undefined {
  if (!context.open) return `not awaiting approval (current phase: ${context.phase})`;
  if (voter.tokenId !== undefined && context.usedTokenIds.includes(voter.tokenId))
    return 'this token was already used for a vote; a vote needs a fresh token';
  if (decision === 'approve' && voter.user === context.requestedBy.user)
    return `${voter.user} requested this deployment and cannot approve it`;
  if (!isNamed(voter, context.approvers))
    return `${voter.user} may not approve in ${context.environment} (approvers: ${context.approvers.join(', ') || 'none'})`;
  if (context.votes.some((v) => v.approver === voter.user)) return `${voter.user} has already voted`;
  return undefined;
}

/** Per-environment permission to request deploys and rollbacks. */
export function refuseRequester(environment: string, policy: EnvironmentPolicy, who: Identity): string | undefined {
  if (policy.deployers.length === 0 || isNamed(who, policy.deployers)) return undefined;
  return `${who.user} may not deploy to ${environment} (deployers: ${policy.deployers.join(', ')})`;
}

/** Who may retry or abandon a failed compensation: the named resolvers, else whoever may approve or deploy. */
export function refuseResolver(environment: string, policy: EnvironmentPolicy, who: Identity): string | undefined {
  const named = policy.resolvers.length ? policy.resolvers : [...policy.approval.approvers, ...policy.deployers];
  if (named.length === 0 || isNamed(who, named)) return undefined;
  return `${who.user} may not resolve deployments in ${environment} (resolvers: ${named.join(', ')})`;
}

export interface FreezeDecision {
  refused?: string;
  /** Set when a break-glass principal overrode a freeze: always audited. */
  override?: string;
}

/** Freeze windows: a request inside one is refused unless a break-glass principal asks for the override. */
export function judgeFreeze(
  environment: string,
  policy: EnvironmentPolicy,
  who: Identity,
  at: Date,
  breakGlass: string | undefined,
): FreezeDecision {
  const freeze = activeFreeze(policy, at);
  if (!freeze) return {};
  const window = `${environment} is frozen until ${freeze.until}: ${freeze.reason}`;
  if (breakGlass === undefined) return { refused: window };
  if (!isNamed(who, policy.breakGlass))
    return {
      refused: `${window}; ${who.user} may not break glass (allowed: ${policy.breakGlass.join(', ') || 'none'})`,
    };
  return { override: `${who.user} overrode the freeze (${freeze.reason}): ${breakGlass}` };
}
