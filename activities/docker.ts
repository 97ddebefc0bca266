/**
 * Docker target. Strategy: recreate. The running container is stopped and kept, renamed, as the rollback point;
 * the new release starts under the service's name. Restore renames the kept container back, so the previous
 * configuration and image come back exactly, secrets included, without any of them passing through a workflow.
 */
import { createHash } from 'node:crypto';
import Docker from 'dockerode';
import { heartbeat } from '@temporalio/activity';
import type { DockerTarget } from '../domain/requests.js';
import { compareReleases, type ConsistencyReport, type PinnedImage, type ReleaseState } from '../domain/release.js';
import { invalid, isConnectionError, messageOf, unreachable } from './failures.js';

const LABEL = {
  service: 'deploy-agent.service',
  environment: 'deploy-agent.environment',
  deploymentId: 'deploy-agent.deployment-id',
  version: 'deploy-agent.version',
} as const;
const MIN_API_VERSION = '1.41';
const STOP_TIMEOUT_SECONDS = 10;

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
async function call<T>(target: DockerTarget, action: (docker: Docker) => Promise<T>): Promise<T> {
  try {
    return await action(engine(target.host));
  } catch (error) {
    if (isConnectionError(error)) throw unreachable(`Docker engine ${target.host}`, error);
    throw error;
  }
}

export const activeName = (target: DockerTarget): string => `${target.service}-${target.environment}`;
const keptName = (target: DockerTarget, deploymentOrId: string): string =>
  `${activeName(target)}--${deploymentOrId.slice(-12)}`;

function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

async function inspect(docker: Docker, nameOrId: string): Promise<Docker.ContainerInspectInfo | undefined> {
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

function releaseStateOf(info: Docker.ContainerInspectInfo | undefined): ReleaseState {
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

/** What validation learns from a target: what it is, what runs there now, and what stands in the way. */
export interface EnvironmentReport {
  description: string;
  current: ReleaseState;
  problems: string[];
}

/** Environment compatibility and dependency verification, in one look at the engine. */
export async function inspectDockerEnvironment(target: DockerTarget, dependsOn: string[]): Promise<EnvironmentReport> {
  return call(target, async (docker) => {
    const version = await docker.version();
    const problems: string[] = [];
    if (compareVersions(version.ApiVersion, MIN_API_VERSION) < 0)
      problems.push(`Docker API ${version.ApiVersion} is older than the supported ${MIN_API_VERSION}`);
    const current = await inspect(docker, activeName(target));
    const onPort = await docker.listContainers({ all: false, filters: { publish: [String(target.hostPort)] } });
    for (const other of onPort)
      if (other.Id !== current?.Id)
        problems.push(`host port ${target.hostPort} is taken by container ${other.Names.join(',')}`);
    for (const dependency of dependsOn) {
      const name = activeName({ ...target, service: dependency });
      const info = await inspect(docker, name);
      if (!info?.State.Running) problems.push(`dependency ${dependency} is not running in ${target.environment}`);
      else if (info.State.Health?.Status === 'unhealthy')
        problems.push(`dependency ${dependency} is unhealthy in ${target.environment}`);
    }
    return {
      description: `Docker ${version.Version}, API ${version.ApiVersion}`,
      current: releaseStateOf(current),
      problems,
    };
  });
}

function compareVersions(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am - bm || an - bn;
}

/** Asks the image's registry for the digest of `repository:version`; a missing image is invalid input. */
export async function resolveImage(target: DockerTarget, repository: string, version: string): Promise<PinnedImage> {
  return call(target, async (docker) => {
    const tagged = `${repository}:${version}`;
    try {
      const info = await docker.getImage(tagged).distribution();
      const digest = info.Descriptor.digest;
      return { reference: `${repository}@${digest}`, digest };
    } catch (error) {
      const code = statusCode(error);
      if (code !== undefined && code >= 400 && code < 500)
        throw invalid(`image ${tagged} was not found in its registry (${messageOf(error)})`);
      throw error;
    }
  });
}

export async function snapshotRelease(target: DockerTarget): Promise<ReleaseState> {
  return call(target, async (docker) => releaseStateOf(await inspect(docker, activeName(target))));
}

async function pull(docker: Docker, reference: string): Promise<void> {
  const stream = await docker.pull(reference);
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error) => (error ? reject(error) : resolve()),
      () => heartbeat('pulling'),
    );
  });
}

async function retire(docker: Docker, target: DockerTarget, info: Docker.ContainerInspectInfo): Promise<void> {
  const container = docker.getContainer(info.Id);
  if (info.State.Running) await container.stop({ t: STOP_TIMEOUT_SECONDS });
  await container.rename({ name: keptName(target, info.Config.Labels?.[LABEL.deploymentId] ?? info.Id) });
}

export interface ApplyRequest {
  target: DockerTarget;
  deploymentId: string;
  version: string;
  image: PinnedImage;
}

/** Idempotent: a retry finds its own container by deployment id and only makes sure it runs. */
export async function applyRelease({ target, deploymentId, version, image }: ApplyRequest): Promise<ReleaseState> {
  return call(target, async (docker) => {
    await pull(docker, image.reference);
    const name = activeName(target);
    const current = await inspect(docker, name);
    if (current && current.Config.Labels?.[LABEL.deploymentId] !== deploymentId) await retire(docker, target, current);
    if (!current || current.Config.Labels?.[LABEL.deploymentId] !== deploymentId) {
      const port = `${target.containerPort}/tcp`;
      await docker.createContainer({
        name,
        Image: image.reference,
        Env: Object.entries(target.env).map(([key, value]) => `${key}=${value}`),
        ExposedPorts: { [port]: {} },
        Labels: {
          [LABEL.service]: target.service,
          [LABEL.environment]: target.environment,
          [LABEL.deploymentId]: deploymentId,
          [LABEL.version]: version,
        },
        HostConfig: {
          PortBindings: { [port]: [{ HostIp: target.hostIp, HostPort: String(target.hostPort) }] },
          RestartPolicy: { Name: 'unless-stopped' },
        },
      });
    }
    const created = await docker.getContainer(name).inspect();
    if (!created.State.Running) await docker.getContainer(name).start();
    return releaseStateOf(await docker.getContainer(name).inspect());
  });
}

/** The releases kept as rollback points, newest first. */
async function keptReleases(docker: Docker, target: DockerTarget): Promise<Docker.ContainerInspectInfo[]> {
  const listed = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.service}=${target.service}`, `${LABEL.environment}=${target.environment}`] },
  });
  const infos = await Promise.all(listed.map((c) => docker.getContainer(c.Id).inspect()));
  return infos
    .filter((info) => info.Name !== `/${activeName(target)}`)
    .sort((a, b) => b.State.FinishedAt.localeCompare(a.State.FinishedAt));
}

/** After a successful deploy: keep only the newest `historyLimit` rollback points. */
export async function pruneHistory(target: DockerTarget): Promise<string[]> {
  return call(target, async (docker) => {
    const kept = await keptReleases(docker, target);
    const pruned = kept.slice(target.historyLimit);
    for (const info of pruned) await docker.getContainer(info.Id).remove({ force: true });
    return pruned.map((info) => info.Name.replace(/^\//, ''));
  });
}

/** A kept release: the one a deployment applied, or the newest (the previous release). */
export async function findKeptRelease(target: DockerTarget, deploymentId?: string): Promise<ReleaseState> {
  return call(target, async (docker) => {
    const kept = await keptReleases(docker, target);
    const found = deploymentId ? kept.find((i) => i.Config.Labels?.[LABEL.deploymentId] === deploymentId) : kept[0];
    if (!found)
      throw invalid(
        deploymentId
          ? `deployment ${deploymentId} is not among the ${kept.length} releases kept for ${activeName(target)}`
          : `no previous release of ${activeName(target)} is kept to roll back to`,
      );
    return { ...releaseStateOf(found), running: true };
  });
}

export interface RestoreRequest {
  target: DockerTarget;
  to: ReleaseState;
  /** Keep the release being replaced as a rollback point (manual rollback) or remove it (failed deploy). */
  keepCurrent: boolean;
}

/** Idempotent: brings back exactly the container of `to`, or no container when `to` is absent. */
export async function restoreRelease({ target, to, keepCurrent }: RestoreRequest): Promise<ReleaseState> {
  return call(target, async (docker) => {
    const name = activeName(target);
    const current = await inspect(docker, name);
    if (current && current.Id !== to.handle) {
      if (keepCurrent && current.Config.Labels?.[LABEL.deploymentId]) await retire(docker, target, current);
      else await docker.getContainer(current.Id).remove({ force: true });
    }
    if (!to.present || !to.handle) return releaseStateOf(await inspect(docker, name));
    const wanted = await inspect(docker, to.handle);
    if (!wanted) throw invalid(`the rollback point container ${to.handle.slice(0, 12)} no longer exists`);
    if (wanted.Name !== `/${name}`) await docker.getContainer(to.handle).rename({ name });
    if (to.running && !wanted.State.Running) await docker.getContainer(to.handle).start();
    return releaseStateOf(await inspect(docker, name));
  });
}

/** Data-consistency verification: the live release against the state it must equal. */
export async function verifyRelease(target: DockerTarget, expected: ReleaseState): Promise<ConsistencyReport> {
  return compareReleases(expected, await snapshotRelease(target));
}
