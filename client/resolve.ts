/** deploy-agent resolve: an operator's answer to a failed compensation, retry or abandon. */
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { CompensationDecision } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { resolveCompensationUpdate } from '../workflows/messages.js';
import { deploymentHandle } from './connection.js';
import { printLine } from './output.js';
import { settings } from './settings.js';

export async function resolveCommand(
  deploymentId: string,
  decision: Omit<CompensationDecision, 'operator'>,
): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const answer = await handle
    .executeUpdate(resolveCompensationUpdate, { args: [{ ...decision, operator: settings.identity() }] })
    .catch((error: unknown) => {
      if (error instanceof WorkflowUpdateFailedError)
        throw new InvalidInput(`refused: ${error.cause?.message ?? error.message}`);
      throw error;
    });
  printLine(answer);
  return 0;
}
