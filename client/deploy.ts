/** deploy-agent deploy: starts a deploy of a version to an environment. */
import type { Client, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { InvalidInput } from '../domain/failures.js';
import { resolveEnvironment, versionSchema } from '../domain/spec.js';
import { connect } from './connection.js';
import type { OutputOptions } from './output.js';
import { settings } from './settings.js';
import { type LoadedSpec, loadSpecFile } from './spec-file.js';
import { announceAndMaybeWait, startRunbook } from './start.js';

export interface DeployOptions {
  env: string;
  version: string;
  reason?: string;
}

/** Starts a deploy; an invalid version or a busy environment is refused (`InvalidInput`). */
export async function startDeploy(
  client: Client,
  loaded: LoadedSpec,
  options: DeployOptions,
  requestedBy: string,
): Promise<WorkflowHandleWithFirstExecutionRunId> {
  const target = resolveEnvironment(loaded.spec, options.env, loaded.file);
  return startRunbook(client, {
    workflow: 'deployWorkflow',
    request: { target, version: parseVersion(options.version), requestedBy, reason: options.reason },
  });
}

function parseVersion(text: string): string {
  const version = versionSchema.safeParse(text);
  if (!version.success) throw new InvalidInput(`--version ${text}: ${version.error.issues[0]?.message}`);
  return version.data;
}

export async function deployCommand(
  options: DeployOptions & OutputOptions & { file: string; wait?: boolean; timeout?: number },
): Promise<number> {
  const loaded = await loadSpecFile(options.file);
  // Bad input is refused before Temporal is asked anything: exit 2, whether or not Temporal is up.
  parseVersion(options.version);
  resolveEnvironment(loaded.spec, options.env, loaded.file);
  const client = await connect();
  const handle = await startDeploy(client, loaded, options, settings.identity());
  return announceAndMaybeWait(handle, options);
}
