/**
 * deploy-agent audit: the audit events of deployments, oldest first, from the deployments' own records (the result of
 * an ended one, the status query of a running one), found by their search attributes.
 */
import type { AuditEvent } from '../domain/audit.js';
import { deploymentIdOf } from '../domain/deployment.js';
import { InvalidInput, messageOf } from '../domain/failures.js';
import { searchAttributes } from '../workflows/messages.js';
import { connect } from './connection.js';
import { parseName } from './deploy.js';
import { type OutputOptions, printLine } from './output.js';
import { fetchStatus } from './status.js';

export interface AuditOptions extends OutputOptions {
  since?: string;
  service?: string;
  env?: string;
}

export interface AuditRow extends AuditEvent {
  deploymentId: string;
  service: string;
  environment: string;
  policyHash?: string;
}

export async function auditCommand(options: AuditOptions): Promise<number> {
  const filters = [`${searchAttributes.service.name} IS NOT NULL`];
  if (options.since) {
    const since = new Date(options.since);
    if (Number.isNaN(since.getTime())) throw new InvalidInput(`--since ${options.since}: expected an ISO 8601 date`);
    filters.push(`StartTime >= '${since.toISOString()}'`);
  }
  if (options.service) filters.push(`${searchAttributes.service.name} = '${parseName('--service', options.service)}'`);
  if (options.env) filters.push(`${searchAttributes.environment.name} = '${parseName('--env', options.env)}'`);
  const client = await connect();
  const rows: AuditRow[] = [];
  for await (const execution of client.workflow.list({ query: filters.join(' AND '), pageSize: 100 })) {
    const deploymentId = deploymentIdOf(execution.workflowId, execution.runId);
    const status = await fetchStatus(client.workflow.getHandle(execution.workflowId, execution.runId)).catch(
      (error: unknown) => {
        process.stderr.write(`deploy-agent: ${deploymentId}: no record (${messageOf(error)})\n`);
        return undefined;
      },
    );
    for (const event of status?.audit ?? [])
      rows.push({
        ...event,
        deploymentId,
        service: status?.service ?? '?',
        environment: status?.environment ?? '?',
        policyHash: status?.policyHash,
      });
  }
  rows.sort((a, b) => a.at.localeCompare(b.at));
  if (options.json) printLine(JSON.stringify(rows, null, 2));
  else
    for (const r of rows)
      printLine(`${r.at}  ${r.action.padEnd(8)} ${r.outcome.padEnd(8)} ${r.actor}  ${r.deploymentId}  ${r.reason}`);
  return 0;
}
