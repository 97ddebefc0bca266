/** deploy-agent list: deployments and rollbacks, newest first, found by their search attributes. */
import { deploymentIdOf } from '../domain/deployment.js';
import { searchAttributes } from '../workflows/messages.js';
import { connect } from './connection.js';
import { type OutputOptions, printLine } from './output.js';

export interface ListOptions extends OutputOptions {
  service?: string;
  env?: string;
}

export async function listCommand(options: ListOptions): Promise<number> {
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
      // A run Temporal ended itself (terminated, timed out) never updated its DeployStatus: say how it ended.
      status: ['RUNNING', 'COMPLETED'].includes(execution.status.name)
        ? sa.get(searchAttributes.status)
        : `${execution.status.name.toLowerCase().replace('_', '-')} (operator needed)`,
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
