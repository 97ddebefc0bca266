/** deploy-agent deploy: starts a deploy of a version to an environment. */
import type { Client, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { InvalidInput } from '../domain/failures.js';
import { nameSchema, versionSchema } from '../domain/spec.js';
import { connect } from './connection.js';
import { credentialFor } from './credentials.js';
import type { OutputOptions } from './output.js';
import { type LoadedSpec, loadSpecFile } from './spec-file.js';
import { announceAndMaybeWait, startRunbook } from './start.js';

export interface DeployOptions {
  env: string;
  version: string;
  reason?: string;
  breakGlass?: string;
}

/** Starts a deploy; an invalid version or a busy environment is refused (`InvalidInput`). */
export async function startDeploy(
  client: Client,
  loaded: LoadedSpec,
  options: DeployOptions,
): Promise<WorkflowHandleWithFirstExecutionRunId> {
  return startRunbook(client, {
    workflow: 'deployWorkflow',
    request: {
      spec: loaded.document,
      environment: parseEnvironment(options.env),
      version: parseVersion(options.version),
      reason: options.reason,
      breakGlass: options.breakGlass,
      credential: await credentialFor('request'),
    },
  });
}

function parseVersion(text: string): string {
  const version = versionSchema.safeParse(text);
  if (!version.success) throw new InvalidInput(`--version ${text}: ${version.error.issues[0]?.message}`);
  return version.data;
}

/** A service or environment name from a flag: a DNS label, or invalid input naming the flag. */
export function parseName(flag: string, text: string): string {
  const name = nameSchema.safeParse(text);
  if (!name.success) throw new InvalidInput(`${flag} ${text}: ${name.error.issues[0]?.message}`);
  return name.data;
}

export const parseEnvironment = (text: string): string => parseName('--env', text);

export async function deployCommand(
  options: DeployOptions & OutputOptions & { file: string; wait?: boolean; timeout?: number },
): Promise<number> {
  const loaded = await loadSpecFile(options.file);
  // Bad input is refused before Temporal is asked anything: exit 2, whether or not Temporal is up.
  parseVersion(options.version);
  parseEnvironment(options.env);
  const client = await connect();
  const handle = await startDeploy(client, loaded, options);
  return announceAndMaybeWait(handle, options);
}
