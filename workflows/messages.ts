/** Messages of the deploy and rollback workflows: the one definition shared by workflows, worker and CLI. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApprovalRecord, CompensationDecision, DeploymentStatus, VoteRequest } from '../domain/deployment.js';

/** Approve or reject, validated before it reaches history: what the CLI uses. */
export const voteUpdate = defineUpdate<ApprovalRecord, [VoteRequest]>('vote');
/** The same vote for tools that can only signal (the Temporal UI); an invalid one is recorded as refused. */
export const voteSignal = defineSignal<[VoteRequest]>('vote-signal');
/** An operator's retry or abandon of a compensation that failed. */
export const resolveCompensationUpdate = defineUpdate<string, [CompensationDecision]>('resolve-compensation');
export const statusQuery = defineQuery<DeploymentStatus>('status');

export const searchAttributes = {
  service: defineSearchAttributeKey('DeployService', SearchAttributeType.KEYWORD),
  environment: defineSearchAttributeKey('DeployEnvironment', SearchAttributeType.KEYWORD),
  version: defineSearchAttributeKey('DeployVersion', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('DeployStatus', SearchAttributeType.KEYWORD),
};
export const allSearchAttributes = Object.values(searchAttributes);
