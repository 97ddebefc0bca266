/** deploy-agent status: where a deployment stands, or how it ended. */
import type { WorkflowHandle } from '@temporalio/client';
import { type DeploymentStatus, FINAL_STATES } from '../domain/deployment.js';
import { EXIT_CODES } from '../domain/failures.js';
import { statusQuery } from '../workflows/messages.js';
import { deploymentHandle } from './connection.js';
import { heartbeats, type OutputOptions, printLine, printStatus } from './output.js';

/** The status of a deployment, running or ended (an ended one answers from its recorded result). */
export async function fetchStatus(handle: WorkflowHandle): Promise<DeploymentStatus> {
  const description = await handle.describe();
  if (description.status.name === 'COMPLETED') return (await handle.result()) as DeploymentStatus;
  return handle.query(statusQuery);
}

export async function statusCommand(deploymentId: string, options: OutputOptions): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const status = await fetchStatus(handle);
  const progress = FINAL_STATES.has(status.state) ? [] : await heartbeats(handle);
  if (options.json) printLine(JSON.stringify({ ...status, progress }, null, 2));
  else {
    printStatus(status);
    for (const line of progress) printLine(`progress: ${line}`);
  }
  return FINAL_STATES.has(status.state) ? EXIT_CODES[status.state] : 0;
}
