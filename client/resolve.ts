/** deploy-agent resolve: an operator's answer to a failed compensation, retry or abandon. */
import type { ResolveRequest } from '../domain/deployment.js';
import { resolveCompensationUpdate } from '../workflows/messages.js';
import { deploymentHandle, sendUpdate } from './connection.js';
import { printLine } from './output.js';
import { credentialFor } from './credentials.js';

export async function resolveCommand(
  deploymentId: string,
  decision: Omit<ResolveRequest, 'credential'>,
): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const credential = await credentialFor('vote');
  const answer = await sendUpdate('resolve', () =>
    handle.executeUpdate(resolveCompensationUpdate, { args: [{ ...decision, credential }] }),
  );
  printLine(answer);
  return 0;
}
