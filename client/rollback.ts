/** deploy-agent rollback: brings back the previous release, or the one a deployment applied. */
import { parseDeploymentId } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { connect } from './connection.js';
import { credentialFor } from './credentials.js';
import { parseEnvironment } from './deploy.js';
import type { OutputOptions } from './output.js';
import { loadSpecFile } from './spec-file.js';
import { announceAndMaybeWait, startRunbook } from './start.js';

export interface RollbackOptions extends OutputOptions {
  file: string;
  service?: string;
  env: string;
  to?: string;
  reason?: string;
  breakGlass?: string;
  wait?: boolean;
  /** Milliseconds, with --wait. */
  timeout?: number;
}

export async function rollbackCommand(options: RollbackOptions): Promise<number> {
  const { spec, document } = await loadSpecFile(options.file);
  if (options.service && options.service !== spec.service)
    throw new InvalidInput(`--service ${options.service} does not match service "${spec.service}" of ${options.file}`);
  const environment = parseEnvironment(options.env);
  if (options.to) parseDeploymentId(options.to);
  const client = await connect();
  const handle = await startRunbook(client, {
    workflow: 'rollbackWorkflow',
    request: {
      spec: document,
      environment,
      toDeploymentId: options.to,
      reason: options.reason,
      breakGlass: options.breakGlass,
      credential: await credentialFor('request'),
    },
  });
  return announceAndMaybeWait(handle, options);
}
