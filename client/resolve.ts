/** deploy-agent resolve: an operator's answer to a failed compensation, retry or abandon. */
import type { CompensationDecision } from '../domain/deployment.js';
import { resolveCompensationUpdate } from '../workflows/messages.js';
import { deploymentHandle, sendUpdate } from './connection.js';
import { printLine } from './output.js';
import { settings } from './settings.js';

export async function resolveCommand(
  deploymentId: string,
  decision: Omit<CompensationDecision, 'operator'>,
): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const answer = await sendUpdate('resolve', () =>
    handle.executeUpdate(resolveCompensationUpdate, { args: [{ ...decision, operator: settings.identity() }] }),
  );
  printLine(answer);
  return 0;
}
