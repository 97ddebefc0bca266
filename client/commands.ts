/** The CLI's commands: each returns the process exit code of the CLI contract. */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import {
  type ApprovalRecord,
  type CompensationDecision,
  type DeploymentStatus,
  deploymentIdOf,
  type Decision,
  FINAL_STATES,
  lockId,
  parseDeploymentId,
  TASK_QUEUE,
  type VoteRequest,
} from '../domain/deployment.js';
import { EXIT_CODES } from '../domain/failures.js';
import { renderReport } from '../domain/report.js';
const EXIT_INVALID_INPUT = EXIT_CODES.invalid;
import type { DeployRequest, RollbackRequest } from '../domain/requests.js';
import { resolveEnvironment, versionSchema } from '../domain/spec.js';
import { resolveCompensationUpdate, searchAttributes, statusQuery, voteUpdate } from '../workflows/messages.js';
import type { deployWorkflow, rollbackWorkflow } from '../workflows/index.js';
import { followProgress, heartbeats, printLine, printStatus } from './output.js';
import { settings, workflowLink } from './settings.js';
import { type LoadedSpec, loadSpecFile } from './spec-file.js';

export async function connect(): Promise<Client> {
  const connection = await Connection.connect({ address: settings.address(), connectTimeout: '5s' });
  return new Client({ connection, namespace: settings.namespace() });
}

export interface OutputOptions {
  json?: boolean;
}

export async function validateCommand(options: { file: string; env: string }): Promise<number> {
  const { spec, file } = await loadSpecFile(options.file);
  const target = resolveEnvironment(spec, options.env, options.file);
  const via = target.settings.docker
    ? `Docker at ${target.settings.docker.host}`
    : `Kubernetes namespace ${target.settings.kubernetes?.namespace ?? '?'}`;
  printLine(`${file}: valid; ${target.service} in ${target.environment} via ${via}`);
  return 0;
}

export interface DeployOptions {
  env: string;
  version: string;
  reason?: string;
}

/** Starts a deploy; a number is the exit code of a refusal (invalid version, busy environment). */
export async function startDeploy(
  client: Client,
  loaded: LoadedSpec,
  options: DeployOptions,
  requestedBy: string,
): Promise<WorkflowHandleWithFirstExecutionRunId | number> {
  const version = versionSchema.safeParse(options.version);
  if (!version.success) return refuse(`--version ${options.version}: ${version.error.issues[0]?.message}`);
  const target = resolveEnvironment(loaded.spec, options.env, loaded.file);
  const request: DeployRequest = {
    target,
    version: version.data,
    requestedBy,
    reason: options.reason,
  };
  return startExclusive(client, target.service, target.environment, () =>
    client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
      taskQueue: TASK_QUEUE,
      workflowId: lockId(target.service, target.environment),
      args: [request],
      staticSummary: `deploy ${target.service} ${version.data} to ${target.environment}`,
      staticDetails: `requested by ${requestedBy}${request.reason ? `: ${request.reason}` : ''}`,
      typedSearchAttributes: [
        { key: searchAttributes.service, value: target.service },
        { key: searchAttributes.environment, value: target.environment },
        { key: searchAttributes.version, value: version.data },
        { key: searchAttributes.status, value: 'running' },
      ],
    }),
  );
}

export async function deployCommand(
  options: DeployOptions & { file: string; wait?: boolean; json?: boolean },
): Promise<number> {
  const loaded = await loadSpecFile(options.file);
  const client = await connect();
  const handle = await startDeploy(client, loaded, options, settings.identity());
  if (typeof handle === 'number') return handle;
  return announceAndMaybeWait(handle, options);
}

export async function rollbackCommand(options: {
  file: string;
  service?: string;
  env: string;
  to?: string;
  reason?: string;
  wait?: boolean;
  json?: boolean;
}): Promise<number> {
  const { spec } = await loadSpecFile(options.file);
  if (options.service && options.service !== spec.service)
    return refuse(`--service ${options.service} does not match service "${spec.service}" of ${options.file}`);
  const target = resolveEnvironment(spec, options.env, options.file);
  if (options.to) parseDeploymentId(options.to);
  const request: RollbackRequest = {
    target,
    toDeploymentId: options.to,
    requestedBy: settings.identity(),
    reason: options.reason,
  };
  const client = await connect();
  const handle = await startExclusive(client, target.service, target.environment, () =>
    client.workflow.start<typeof rollbackWorkflow>('rollbackWorkflow', {
      taskQueue: TASK_QUEUE,
      workflowId: lockId(target.service, target.environment),
      args: [request],
      staticSummary: `roll back ${target.service} in ${target.environment} to ${options.to ?? 'the previous release'}`,
      staticDetails: `requested by ${request.requestedBy}${request.reason ? `: ${request.reason}` : ''}`,
      typedSearchAttributes: [
        { key: searchAttributes.service, value: target.service },
        { key: searchAttributes.environment, value: target.environment },
        { key: searchAttributes.status, value: 'running' },
      ],
    }),
  );
  if (typeof handle === 'number') return handle;
  return announceAndMaybeWait(handle, options);
}

/** One deploy or rollback per service and environment: the workflow id is the lock. */
async function startExclusive(
  client: Client,
  service: string,
  environment: string,
  start: () => Promise<WorkflowHandleWithFirstExecutionRunId>,
): Promise<WorkflowHandleWithFirstExecutionRunId | number> {
  try {
    return await start();
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    const running = await client.workflow.getHandle(lockId(service, environment)).describe();
    const version = running.typedSearchAttributes.get(searchAttributes.version);
    return refuse(
      `${service} in ${environment} is busy: deployment ${deploymentIdOf(running.workflowId, running.runId)} ` +
        `(${running.type}${version ? ` of ${version}` : ''}, started ${running.startTime.toISOString()}) is still running`,
    );
  }
}

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

/** Parses the id before connecting, so a malformed id is invalid input (exit 2), not an unreachable server. */
async function connectTo(deploymentId: string): Promise<{ handle: WorkflowHandle }> {
  const { workflowId, runId } = parseDeploymentId(deploymentId);
  const client = await connect();
  return { handle: client.workflow.getHandle(workflowId, runId) };
}

export async function castVote(handle: WorkflowHandle, vote: VoteRequest): Promise<ApprovalRecord> {
  return handle.executeUpdate(voteUpdate, { args: [vote] });
}

export async function voteCommand(deploymentId: string, decision: Decision, comment?: string): Promise<number> {
  const { handle } = await connectTo(deploymentId);
  try {
    const record = await castVote(handle, { approver: settings.identity(), decision, comment });
    const approvals = record.votes.filter((v) => v.decision === 'approve').length;
    printLine(
      `${decision === 'approve' ? 'approved' : 'rejected'} ${deploymentId} (${approvals} of ${record.required} approvals)`,
    );
    return 0;
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError)
      return refuse(`vote refused: ${error.cause?.message ?? error.message}`);
    throw error;
  }
}

export async function resolveCompensationCommand(
  deploymentId: string,
  decision: Omit<CompensationDecision, 'operator'>,
): Promise<number> {
  const { handle } = await connectTo(deploymentId);
  try {
    const answer = await handle.executeUpdate(resolveCompensationUpdate, {
      args: [{ ...decision, operator: settings.identity() }],
    });
    printLine(answer);
    return 0;
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError) return refuse(`refused: ${error.cause?.message ?? error.message}`);
    throw error;
  }
}

/** The status of a deployment, running or ended (an ended one answers from its recorded result). */
export async function fetchStatus(handle: WorkflowHandle): Promise<DeploymentStatus> {
  const description = await handle.describe();
  if (description.status.name === 'COMPLETED') return (await handle.result()) as DeploymentStatus;
  return handle.query(statusQuery);
}

export async function statusCommand(deploymentId: string, options: OutputOptions): Promise<number> {
  const { handle } = await connectTo(deploymentId);
  const status = await fetchStatus(handle);
  const progress = FINAL_STATES.has(status.state) ? [] : await heartbeats(handle);
  if (options.json) printLine(JSON.stringify({ ...status, progress }, null, 2));
  else {
    printStatus(status);
    for (const line of progress) printLine(`progress: ${line}`);
  }
  return FINAL_STATES.has(status.state) ? EXIT_CODES[status.state] : 0;
}

export async function listCommand(options: OutputOptions & { service?: string; env?: string }): Promise<number> {
  const client = await connect();
  const filters = [`${searchAttributes.service.name} IS NOT NULL`];
  if (options.service) filters.push(`${searchAttributes.service.name} = '${escapeQuery(options.service)}'`);
  if (options.env) filters.push(`${searchAttributes.environment.name} = '${escapeQuery(options.env)}'`);
  const rows = [];
  for await (const execution of client.workflow.list({ query: filters.join(' AND '), pageSize: 100 })) {
    const sa = execution.typedSearchAttributes;
    rows.push({
      deploymentId: deploymentIdOf(execution.workflowId, execution.runId),
      kind: execution.type === 'rollbackWorkflow' ? 'rollback' : 'deploy',
      service: sa.get(searchAttributes.service),
      environment: sa.get(searchAttributes.environment),
      version: sa.get(searchAttributes.version),
      status: sa.get(searchAttributes.status),
      startedAt: execution.startTime.toISOString(),
    });
    if (rows.length >= 100) break;
  }
  if (options.json) printLine(JSON.stringify(rows, null, 2));
  else
    for (const r of rows)
      printLine(
        `${r.startedAt}  ${r.kind.padEnd(8)} ${(r.status ?? '?').padEnd(19)} ${r.version ?? '-'}  ${r.deploymentId}`,
      );
  return 0;
}

function escapeQuery(value: string): string {
  return value.replaceAll("'", "\\'");
}

function refuse(message: string): number {
  process.stderr.write(`deploy-agent: ${message}\n`);
  return EXIT_INVALID_INPUT;
}
