/** deploy-agent approve / reject: a vote at a deployment's approval gate, on the plan the voter was shown. */
import type { WorkflowHandle } from '@temporalio/client';
import type { ApprovalRecord, Decision, VoteRequest } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { contentHashSchema, planLines } from '../domain/plan.js';
import { voteUpdate } from '../workflows/messages.js';
import { deploymentHandle, sendUpdate } from './connection.js';
import { printLine } from './output.js';
import { credentialFor } from './credentials.js';
import { fetchStatus } from './status.js';

/** Casts a vote; one the workflow refuses (unproven, not an approver, already voted, gate closed) is `InvalidInput`. */
export async function castVote(handle: WorkflowHandle, vote: VoteRequest): Promise<ApprovalRecord> {
  return sendUpdate('vote', () => handle.executeUpdate(voteUpdate, { args: [vote] }));
}

/**
 * The content hash a vote approves: the one pinned by automation that reviewed the plan elsewhere, else the one of
 * the plan just shown. A deployment without a plan (a rollback, or a run from before plans) binds no content.
 */
export async function contentToApprove(handle: WorkflowHandle, pinned?: string): Promise<string | undefined> {
  if (pinned !== undefined) {
    const parsed = contentHashSchema.safeParse(pinned);
    if (!parsed.success) throw new InvalidInput(`--content-hash: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    return parsed.data;
  }
  const { plan } = await fetchStatus(handle);
  if (!plan) return undefined;
  printLine(['Plan of this deployment (what the vote covers):', ...planLines(plan)].join('\n'));
  return plan.contentHash;
}

export interface VoteOptions {
  comment?: string;
  /** The content hash the voter reviewed; the gate refuses an approval of any other content. */
  contentHash?: string;
}

export async function voteCommand(
  deploymentId: string,
  decision: Decision,
  options: VoteOptions = {},
): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const contentHash = await contentToApprove(handle, options.contentHash);
  const credential = await credentialFor('vote');
  const record = await castVote(handle, { decision, comment: options.comment, credential, contentHash });
  const approvals = record.votes.filter((v) => v.decision === 'approve').length;
  printLine(
    `${decision === 'approve' ? 'approved' : 'rejected'} ${deploymentId} (${approvals} of ${record.required} approvals)` +
      (contentHash ? `, content ${contentHash}` : ''),
  );
  return 0;
}
