/**
 * The one way to start a deploy or a rollback: the workflow id is the lock (one per service and environment), and the
 * task queue, summary, details and search attributes are set here; a busy environment is refused as invalid input.
 */
import {
  type Client,
  WorkflowExecutionAlreadyStartedError,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { deploymentIdOf, lockId, TASK_QUEUE } from '../domain/deployment.js';
import { EXIT_CODES, InvalidInput } from '../domain/failures.js';
import { renderReport } from '../domain/report.js';
import type { DeployRequest, RollbackRequest } from '../domain/requests.js';
import type { deployWorkflow, rollbackWorkflow } from '../workflows/index.js';
import { deploymentSearchAttributes, searchAttributes } from '../workflows/messages.js';
import { followProgress, type OutputOptions, printLine } from './output.js';
import { workflowLink } from './settings.js';

/** What to start: a deploy or a rollback, with its request. */
export type Runbook =
  { workflow: 'deployWorkflow'; request: DeployRequest } | { workflow: 'rollbackWorkflow'; request: RollbackRequest };

/** Starts the workflow under the lock of its service and environment; a busy environment is `InvalidInput`. */
export async function startRunbook(
  client: Client,
  runbook: Runbook,
): Promise<WorkflowHandleWithFirstExecutionRunId<typeof deployWorkflow | typeof rollbackWorkflow>> {
  const { request } = runbook;
  const { service, environment } = request.target;
  const workflowId = lockId(service, environment);
  const version = runbook.workflow === 'deployWorkflow' ? runbook.request.version : undefined;
  const summary =
    runbook.workflow === 'deployWorkflow'
      ? `deploy ${service} ${runbook.request.version} to ${environment}`
      : `roll back ${service} in ${environment} to ${runbook.request.toDeploymentId ?? 'the previous release'}`;
  try {
    return await client.workflow.start<typeof deployWorkflow | typeof rollbackWorkflow>(runbook.workflow, {
      taskQueue: TASK_QUEUE,
      workflowId,
      args: [request],
      staticSummary: summary,
      staticDetails: `requested by ${request.requestedBy}${request.reason ? `: ${request.reason}` : ''}`,
      typedSearchAttributes: deploymentSearchAttributes({ service, environment, version, status: 'running' }),
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    const running = await client.workflow.getHandle(workflowId).describe();
    const runningVersion = running.typedSearchAttributes.get(searchAttributes.version);
    throw new InvalidInput(
      `${service} in ${environment} is busy: deployment ${deploymentIdOf(running.workflowId, running.runId)} ` +
        `(${running.type}${runningVersion ? ` of ${runningVersion}` : ''}, started ${running.startTime.toISOString()}) ` +
        'is still running',
    );
  }
}

/** Prints the deployment id and its link; with `wait`, follows it to its end and answers with its exit code. */
export async function announceAndMaybeWait(
  handle: WorkflowHandleWithFirstExecutionRunId,
  options: OutputOptions & { wait?: boolean },
): Promise<number> {
  const runId = handle.firstExecutionRunId;
  const deploymentId = deploymentIdOf(handle.workflowId, runId);
  const link = workflowLink(handle.workflowId, runId);
  if (!options.wait) {
    if (options.json) printLine(JSON.stringify({ deploymentId, link }));
    else printLine(`deployment ${deploymentId}\n${link}`);
    return 0;
  }
  if (!options.json) printLine(`deployment ${deploymentId}\n${link}`);
  const status = await followProgress(handle, !options.json);
  if (options.json) printLine(JSON.stringify(status, null, 2));
  else printLine(`\n${renderReport(status)}`);
  return EXIT_CODES[status.state];
}
