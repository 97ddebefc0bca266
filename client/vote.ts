/** deploy-agent approve / reject: a vote at a deployment's approval gate. */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { ApprovalRecord, Decision, VoteRequest } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { voteUpdate } from '../workflows/messages.js';
import { deploymentHandle } from './connection.js';
import { printLine } from './output.js';
import { settings } from './settings.js';

/** Casts a vote; one the workflow refuses (not an approver, already voted, gate closed) is `InvalidInput`. */
export async function castVote(handle: WorkflowHandle, vote: VoteRequest): Promise<ApprovalRecord> {
  try {
    return await handle.executeUpdate(voteUpdate, { args: [vote] });
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError)
      throw new InvalidInput(`vote refused: ${error.cause?.message ?? error.message}`);
    throw error;
  }
}

export async function voteCommand(deploymentId: string, decision: Decision, comment?: string): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const record = await castVote(handle, { approver: settings.identity(), decision, comment });
  const approvals = record.votes.filter((v) => v.decision === 'approve').length;
  printLine(
    `${decision === 'approve' ? 'approved' : 'rejected'} ${deploymentId} (${approvals} of ${record.required} approvals)`,
  );
  return 0;
}
