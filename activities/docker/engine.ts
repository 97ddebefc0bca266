/** The Docker engine as the driver sees it: connections, names, labels and what a container says about its release. */
import { createHash } from 'node:crypto';
import Docker from 'dockerode';
import { isConnectionError, unreachable } from '../../domain/failures.js';
import type { ReleaseState } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';

export const LABEL = {
  service: 'deploy-agent.service',
  environment: 'deploy-agent.environment',
  deploymentId: 'deploy-agent.deployment-id',
  version: 'deploy-agent.version',
} as const;

const engines = new Map<string, Docker>();

function engine(host: string): Docker {
  let docker = engines.get(host);
  if (!docker) {
    const url = new URL(host);
    docker =
      url.protocol === 'unix:'
        ? new Docker({ socketPath: url.pathname })
        : new Docker({
            host: url.hostname,
            port: Number(url.port),
            protocol: url.protocol === 'https:' ? 'https' : 'http',
          });
    engines.set(host, docker);
  }
  return docker;
}

/** Runs one engine call, turning connection failures into TargetUnreachable. */
export async function call<T>(target: DockerTarget, action: (docker: Docker) => Promise<T>): Promise<T> {
  try {
    return await action(engine(target.host));
  } catch (error) {
    if (isConnectionError(error)) throw unreachable(`Docker engine ${target.host}`, error);
    throw error;
  }
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
