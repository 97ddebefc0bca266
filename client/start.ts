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
import { InvalidInput } from '../domain/failures.js';
import { renderReport } from '../domain/report.js';
import type { DeployRequest, RollbackRequest } from '../domain/requests.js';
import type { deployWorkflow, rollbackWorkflow } from '../workflows/index.js';
import { deploymentSearchAttributes, searchAttributes } from '../workflows/messages.js';
import { describeOutcome, exitCodeOf, follow, type Outcome } from './follow.js';
import { type OutputOptions, printLine } from './output.js';
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
  const { environment } = request;
  const service = String(request.spec.service);
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
      // Who asked is known once the worker verified the credential: the status and the report say it.
      ...(request.reason ? { staticDetails: request.reason } : {}),
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
  options: OutputOptions & { wait?: boolean; timeout?: number },
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
  const outcome = await follow(handle, { live: !options.json, timeoutMs: options.timeout });
  printOutcome(deploymentId, outcome, options);
  return exitCodeOf(outcome);
}

/** The report when there is one; otherwise what CI must know, with the id to look the deployment up by. */
function printOutcome(deploymentId: string, outcome: Outcome, options: OutputOptions): void {
  if (outcome.kind === 'status') {
    const { status } = outcome;
    if (options.json) printLine(JSON.stringify(status, null, 2));
    else printLine(`\n${renderReport(status)}`);
    if (status.state === 'compensation-failed')
      process.stderr.write(
        `deploy-agent: ${deploymentId} needs an operator: compensation failed and the environment keeps its lock; ` +
          'answer with `deploy-agent resolve`\n',
      );
    return;
  }
  const summary = describeOutcome(outcome);
  if (options.json)
    printLine(JSON.stringify({ deploymentId, outcome: outcome.kind, summary, last: outcome.last }, null, 2));
  process.stderr.write(`deploy-agent: ${deploymentId}: ${summary}; see \`deploy-agent status ${deploymentId}\`\n`);
}
