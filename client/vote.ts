/** deploy-agent approve / reject: a vote at a deployment's approval gate. */
import type { WorkflowHandle } from '@temporalio/client';
import type { ApprovalRecord, Decision, VoteRequest } from '../domain/deployment.js';
import { voteUpdate } from '../workflows/messages.js';
import { deploymentHandle, sendUpdate } from './connection.js';
import { printLine } from './output.js';
import { credentialFor } from './credentials.js';

/** Casts a vote; one the workflow refuses (unproven, not an approver, already voted, gate closed) is `InvalidInput`. */
export async function castVote(handle: WorkflowHandle, vote: VoteRequest): Promise<ApprovalRecord> {
  return sendUpdate('vote', () => handle.executeUpdate(voteUpdate, { args: [vote] }));
}

export async function voteCommand(deploymentId: string, decision: Decision, comment?: string): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const record = await castVote(handle, { decision, comment, credential: await credentialFor('vote') });
  const approvals = record.votes.filter((v) => v.decision === 'approve').length;
  printLine(
    `${decision === 'approve' ? 'approved' : 'rejected'} ${deploymentId} (${approvals} of ${record.required} approvals)`,
  );
  return 0;
}
