/** Messages of the deploy and rollback workflows: the one definition shared by workflows, worker and CLI. */
import { defineSearchAttributeKey, type SearchAttributePair, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  ApprovalRecord,
  CompensationDecision,
  DeploymentState,
  DeploymentStatus,
  LegacyVoteRequest,
  ResolveRequest,
  VoteRequest,
} from '../domain/deployment.js';

/** Approve or reject with a token: refused before it reaches history when malformed, counted once verified. */
export const voteUpdate = defineUpdate<ApprovalRecord, [VoteRequest | LegacyVoteRequest]>('vote');
/**
 * Kept for runs started before identities were proven, which counted votes by Signal. A Signal cannot carry a proof
 * the gate could answer about, so in every later run a vote by Signal is recorded as refused.
 */
export const voteSignal = defineSignal<[unknown]>('vote-signal');
/** An operator's retry or abandon of a compensation that failed, with a token. */
export const resolveCompensationUpdate = defineUpdate<string, [ResolveRequest | CompensationDecision]>(
  'resolve-compensation',
);
export const statusQuery = defineQuery<DeploymentStatus>('status');

export const searchAttributes = {
  service: defineSearchAttributeKey('DeployService', SearchAttributeType.KEYWORD),
  environment: defineSearchAttributeKey('DeployEnvironment', SearchAttributeType.KEYWORD),
  version: defineSearchAttributeKey('DeployVersion', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('DeployStatus', SearchAttributeType.KEYWORD),
};
export const allSearchAttributes = Object.values(searchAttributes);

/** What a deploy or rollback shows in its search attributes; a field left out is not set (nor cleared). */
export interface DeploymentAttributes {
  service?: string;
  environment?: string;
  /** Set only when there is one: a rollback learns the version it restores later. */
  version?: string;
  status?: DeploymentState;
}

/**
 * The one place deployment search attributes are set from, by the CLI when it starts a workflow and by the runbook
 * as its state changes. The list is part of recorded upsert commands: its keys, values and order must not change.
 */
export function deploymentSearchAttributes({
  service,
  environment,
  version,
  status,
}: DeploymentAttributes): SearchAttributePair[] {
  return [
    ...(service !== undefined ? [{ key: searchAttributes.service, value: service }] : []),
    ...(environment !== undefined ? [{ key: searchAttributes.environment, value: environment }] : []),
    ...(version ? [{ key: searchAttributes.version, value: version }] : []),
    ...(status !== undefined ? [{ key: searchAttributes.status, value: status }] : []),
  ];
}
