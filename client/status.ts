/** deploy-agent status: where a deployment stands, or how it ended; its exit code is the table's for that state. */
import type { WorkflowExecutionDescription, WorkflowHandle } from '@temporalio/client';
import { type DeploymentState, deploymentStates, type DeploymentStatus, FINAL_STATES } from '../domain/deployment.js';
import { CliFailure, EXIT, EXIT_CODES, messageOf } from '../domain/failures.js';
import { searchAttributes, statusQuery } from '../workflows/messages.js';
import { deploymentHandle } from './connection.js';
import { ENDED_BY_TEMPORAL } from './follow.js';
import { heartbeats, type OutputOptions, printLine, printStatus } from './output.js';

/** How long a worker has to answer the status query before the search attributes answer instead. */
const QUERY_DEADLINE_MS = 5_000;

/** The status of a deployment, running or ended (an ended one answers from its recorded result). */
export async function fetchStatus(handle: WorkflowHandle): Promise<DeploymentStatus> {
  const description = await handle.describe();
  if (description.status.name === 'COMPLETED') return (await handle.result()) as DeploymentStatus;
  return handle.query(statusQuery);
}

export async function statusCommand(deploymentId: string, options: OutputOptions): Promise<number> {
  const handle = await deploymentHandle(deploymentId);
  const description = await handle.describe();
  const execution = description.status.name;
  if (execution === 'COMPLETED') return show(handle, (await handle.result()) as DeploymentStatus, options);
  if (execution !== 'RUNNING' && execution !== 'CONTINUED_AS_NEW')
    return showEndedByTemporal(deploymentId, description, options);
  try {
    const status = await handle.client.connection.withDeadline(Date.now() + QUERY_DEADLINE_MS, () =>
      handle.query(statusQuery),
    );
    return show(handle, status, options);
  } catch (error) {
    // The codec server refusing or failing the answer is the answer; only a silent worker falls back.
    if (error instanceof CliFailure) throw error;
    return fromSearchAttributes(deploymentId, description, messageOf(error), options);
  }
}

async function show(handle: WorkflowHandle, status: DeploymentStatus, options: OutputOptions): Promise<number> {
  const progress = FINAL_STATES.has(status.state) ? [] : await heartbeats(handle);
  if (options.json) printLine(JSON.stringify({ ...status, progress }, null, 2));
  else {
    printStatus(status);
    for (const line of progress) printLine(`progress: ${line}`);
  }
  return EXIT_CODES[status.state];
}

/** Terminated, timed out, cancelled or failed by Temporal itself: no report, and nobody restored anything. */
function showEndedByTemporal(deploymentId: string, description: WorkflowExecutionDescription, options: OutputOptions) {
  const how = description.status.name.toLowerCase().replace('_', ' ');
  const summary = `${deploymentId}: ${how} by Temporal at ${description.closeTime?.toISOString() ?? '?'}; operator needed: ${ENDED_BY_TEMPORAL}`;
  if (options.json) printLine(JSON.stringify({ deploymentId, execution: description.status.name, summary }, null, 2));
  else printLine(summary);
  return EXIT.operatorNeeded;
}

/** No worker answered: the search attributes still say where the deployment stands. */
function fromSearchAttributes(
  deploymentId: string,
  description: WorkflowExecutionDescription,
  why: string,
  options: OutputOptions,
): number {
  const attributes = description.typedSearchAttributes;
  const shown = attributes.get(searchAttributes.status);
  const state = deploymentStates.find((s): s is DeploymentState => s === shown);
  const row = {
    deploymentId,
    kind: description.type === 'rollbackWorkflow' ? 'rollback' : 'deploy',
    service: attributes.get(searchAttributes.service),
    environment: attributes.get(searchAttributes.environment),
    version: attributes.get(searchAttributes.version),
    state: state ?? 'unknown',
    startedAt: description.startTime.toISOString(),
    note: `no worker answered (${why}); from the search attributes`,
  };
  if (options.json) printLine(JSON.stringify(row, null, 2));
  else
    printLine(
      `${row.kind} of ${row.service ?? '?'} ${row.version ?? ''} to ${row.environment ?? '?'}: ${row.state}\n` +
        `started ${row.startedAt}\n${row.note}`,
    );
  return state ? EXIT_CODES[state] : EXIT.stillRunning;
}
