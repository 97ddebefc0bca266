/** deploy-agent rollback: brings back the previous release, or the one a deployment applied. */
import { parseDeploymentId } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { resolveEnvironment } from '../domain/spec.js';
import { connect } from './connection.js';
import type { OutputOptions } from './output.js';
import { settings } from './settings.js';
import { loadSpecFile } from './spec-file.js';
import { announceAndMaybeWait, startRunbook } from './start.js';

export interface RollbackOptions extends OutputOptions {
  file: string;
  service?: string;
  env: string;
  to?: string;
  reason?: string;
  wait?: boolean;
  /** Milliseconds, with --wait. */
  timeout?: number;
}

export async function rollbackCommand(options: RollbackOptions): Promise<number> {
  const { spec } = await loadSpecFile(options.file);
  if (options.service && options.service !== spec.service)
    throw new InvalidInput(`--service ${options.service} does not match service "${spec.service}" of ${options.file}`);
  const target = resolveEnvironment(spec, options.env, options.file);
  if (options.to) parseDeploymentId(options.to);
  const client = await connect();
  const handle = await startRunbook(client, {
    workflow: 'rollbackWorkflow',
    request: { target, toDeploymentId: options.to, requestedBy: settings.identity(), reason: options.reason },
  });
  return announceAndMaybeWait(handle, options);
}
