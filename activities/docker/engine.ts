/** The Docker engine as the driver sees it: connections, names, labels and what a container says about its release. */
import { createHash } from 'node:crypto';
import Docker from 'dockerode';
import { fail, isConnectionError, messageOf, unreachable } from '../../domain/failures.js';
import type { ReleaseState } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';

export const LABEL = {
  service: 'deploy-agent.service',
  environment: 'deploy-agent.environment',
  deploymentId: 'deploy-agent.deployment-id',
  version: 'deploy-agent.version',
} as const;

// Every engine call gets an answer or an error within this; a pull's stream counts only silence.
const ENGINE_TIMEOUT_MS = 25_000;
// Not found, timed out, in conflict, throttled: worth another look. Other 4xx are the release's fault.
const RETRYABLE_CLIENT_ERRORS = new Set([404, 408, 409, 429]);

const engines = new Map<string, Docker>();

function engine(host: string): Docker {
  let docker = engines.get(host);
  if (!docker) {
    const url = new URL(host);
    docker =
      url.protocol === 'unix:'
        ? new Docker({ socketPath: url.pathname, timeout: ENGINE_TIMEOUT_MS })
        : new Docker({
            host: url.hostname,
            port: Number(url.port),
            protocol: url.protocol === 'https:' ? 'https' : 'http',
            timeout: ENGINE_TIMEOUT_MS,
          });
    engines.set(host, docker);
  }
  return docker;
}

/**
 * Runs engine calls, classifying what goes wrong: no connection is TargetUnreachable (retried); a request the engine
 * refuses, or a container the OCI runtime cannot start (a missing entrypoint, say), is invalid with the engine's
 * own message, because retrying cannot help while the service is down.
 */
export async function call<T>(target: DockerTarget, action: (docker: Docker) => Promise<T>): Promise<T> {
  try {
    return await action(engine(target.host));
  } catch (error) {
    if (isConnectionError(error)) throw unreachable(`Docker engine ${target.host}`, error);
    const code = statusCode(error);
    if (code !== undefined && code >= 400 && code < 500 && !RETRYABLE_CLIENT_ERRORS.has(code))
      throw fail('invalid', `Docker engine refused: ${engineMessage(error)}`);
    if (code === 500 && /OCI runtime|exec format error|executable file not found/i.test(engineMessage(error)))
      throw fail('invalid', `Docker engine could not start the container: ${engineMessage(error)}`);
    throw error;
  }
}

/** What the engine said, without dockerode's request description around it. */
function engineMessage(error: unknown): string {
  const json = (error as { json?: { message?: unknown } } | undefined)?.json;
  return typeof json?.message === 'string' ? json.message : messageOf(error);
}

export const activeName = (target: DockerTarget): string => `${target.service}-${target.environment}`;
export const keptName = (target: DockerTarget, deploymentOrId: string): string =>
  `${activeName(target)}--${deploymentOrId.slice(-12)}`;

export function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

export async function inspect(docker: Docker, nameOrId: string): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await docker.getContainer(nameOrId).inspect();
  } catch (error) {
    if (statusCode(error) === 404) return undefined;
    throw error;
  }
}

/** The hash of what we manage, read from the live container rather than from our own labels. */
function configHash(info: Docker.ContainerInspectInfo): string {
  const managed = {
    image: info.Config.Image,
    env: [...(info.Config.Env ?? [])].sort(),
    cmd: (info.Config.Cmd as string[] | undefined) ?? null,
    ports: (info.HostConfig.PortBindings as Record<string, unknown> | undefined) ?? {},
    labels: Object.entries(info.Config.Labels ?? {}).sort(),
  };
  return `sha256:${createHash('sha256').update(JSON.stringify(managed)).digest('hex')}`;
}

export function releaseStateOf(info: Docker.ContainerInspectInfo | undefined): ReleaseState {
  if (!info) return { present: false, running: false };
  const labels = info.Config.Labels ?? {};
  const pinned = /@(sha256:[a-f0-9]{64})$/.exec(info.Config.Image)?.[1];
  return {
    present: true,
    handle: info.Id,
    deploymentId: labels[LABEL.deploymentId],
    version: labels[LABEL.version],
    imageDigest: pinned ?? info.Image,
    configHash: configHash(info),
    running: info.State.Running,
  };
}
