/**
 * Docker target. Strategy: recreate. The running container is stopped and kept, renamed
 * `<service>_<environment>.kept-<suffix>`, as the rollback point; the new release starts as `<service>_<environment>`
 * (names: engine.ts). Restore renames the kept container back, so the previous configuration and image come back
 * exactly, secrets included, without any of them passing through a workflow.
 *
 * Only containers labelled for this service and environment are changed: a container at the live name labelled
 * otherwise fails validation, and apply and restore refuse it (invalid) before changing anything. A live container
 * under the legacy name `<service>-<environment>` is still this release's; the next apply or restore renames it.
 */
import type { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { fail, messageOf } from '../../domain/failures.js';
import {
  compareReleases,
  type ConsistencyReport,
  type PinnedImage,
  type ReleaseDiff,
  type ReleaseState,
} from '../../domain/release.js';
import type { HealthCheckSpec } from '../../domain/spec.js';
import type { ApplyRequest, DockerTarget, EnvironmentReport, KeptReleases } from '../../domain/target.js';
import { awaitHealthy } from '../health.js';
import { attemptToken, beforeChange, cancellationSignal, checkpoint, type Fence } from '../targets/attempt.js';
import type { TargetDriver } from '../targets/driver.js';
import {
  LABEL,
  activeName,
  call,
  findLive,
  inspect,
  keptName,
  liveContainer,
  liveNameTaken,
  notOurs,
  ownedBy,
  releaseStateOf,
  statusCode,
} from './engine.js';
import { dockerPlan, requireApprovedSettings } from './content.js';
import { dockerFence } from './fence.js';
import { hardenedConfig } from './hardening.js';
import { changedVariables, resolveSecrets, secretSourceProblems, withoutSecretValues } from './secrets.js';

const MIN_API_VERSION = '1.41';
const STOP_TIMEOUT_SECONDS = 10;

export function dockerDriver(target: DockerTarget): TargetDriver {
  return {
    inspect: (dependsOn) => inspectEnvironment(target, dependsOn),
    resolveImage: (repository, version) => resolveImage(target, repository, version),
    // The Docker engine has no dry run: the container configuration is checked when it is created. What can be
    // checked before is that the worker finds every secret the release names.
    dryRun: () => secretSourceProblems(target),
    plan: (image) => dockerPlan(target, image),
    snapshot: () => snapshotRelease(target),
    apply: (release) => applyRelease(target, release),
    awaitReady: (check: HealthCheckSpec) => awaitHealthy({ check, host: target.hostIp, port: target.hostPort }),
    restore: (to, { keepCurrent }) => restoreRelease(target, to, keepCurrent),
    verify: async (expected) => verifyRelease(target, expected),
    diff: (from, to) => diffRelease(target, from, to),
    keptReleases: () => keptReleases(target),
    prune: () => pruneHistory(target),
  };
}

/** Environment compatibility and dependency verification, in one look at the engine. */
async function inspectEnvironment(target: DockerTarget, dependsOn: string[]): Promise<EnvironmentReport> {
  return call(target, async (docker) => {
    const version = await docker.version();
    const problems: string[] = [];
    if (compareVersions(version.ApiVersion, MIN_API_VERSION) < 0)
      problems.push(`Docker API ${version.ApiVersion} is older than the supported ${MIN_API_VERSION}`);
    const { live, foreign } = await findLive(docker, target);
    if (foreign) problems.push(liveNameTaken(foreign, target));
    const onPort = await docker.listContainers({ all: false, filters: { publish: [String(target.hostPort)] } });
    for (const other of onPort)
      if (other.Id !== live?.Id)
        problems.push(`host port ${target.hostPort} is taken by container ${other.Names.join(',')}`);
    for (const dependency of dependsOn) {
      const { live: info } = await findLive(docker, { service: dependency, environment: target.environment });
      if (!info?.State.Running) problems.push(`dependency ${dependency} is not running in ${target.environment}`);
      else if (info.State.Health?.Status === 'unhealthy')
        problems.push(`dependency ${dependency} is unhealthy in ${target.environment}`);
    }
    return {
      description: `Docker ${version.Version}, API ${version.ApiVersion}`,
      current: releaseStateOf(live),
      problems,
    };
  });
}

function compareVersions(a: string, b: string): number {
  const [am = 0, an = 0] = a.split('.').map(Number);
  const [bm = 0, bn = 0] = b.split('.').map(Number);
  return am - bm || an - bn;
}

/** Asks the image's registry, through the engine, for the digest of `repository:version`. */
async function resolveImage(target: DockerTarget, repository: string, version: string): Promise<PinnedImage> {
  return call(target, async (docker) => {
    const tagged = `${repository}:${version}`;
    try {
      const info = await docker.getImage(tagged).distribution();
      const digest = info.Descriptor.digest;
      return { reference: `${repository}@${digest}`, digest };
    } catch (error) {
      const code = statusCode(error);
      if (code !== undefined && code >= 400 && code < 500)
        throw fail('invalid', `image ${tagged} was not found in its registry (${messageOf(error)})`);
      throw error;
    }
  });
}

/** The rollback point is the live container itself: retire() keeps it. Refused when the live name is not ours. */
async function snapshotRelease(target: DockerTarget): Promise<ReleaseState> {
  return call(target, async (docker) => releaseStateOf(await liveContainer(docker, target)));
}

/** What runs as this target's release; a container at the live name that is someone else's is not it. */
async function liveRelease(target: DockerTarget, hashLike?: string): Promise<ReleaseState> {
  return call(target, async (docker) => releaseStateOf((await findLive(docker, target)).live, hashLike));
}

/** A pull's progress message; a pull that fails after the engine answered 200 ends with one that has `error`. */
interface PullEvent {
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * Pulls with a heartbeat per progress message; a cancelled attempt stops the download. The engine reports a download
 * that fails (registry gone, engine shutting down) as the last message of a stream that otherwise ends normally: that
 * is a failed pull, and nothing may change after it, since the image is not there.
 */
async function pull(docker: Docker, reference: string): Promise<void> {
  const abortSignal = cancellationSignal();
  const stream = (await docker.pull(reference, { abortSignal })) as Readable;
  const stop = () => stream.destroy(abortSignal?.reason instanceof Error ? abortSignal.reason : undefined);
  abortSignal?.addEventListener('abort', stop, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      stream.once('error', reject);
      docker.modem.followProgress(
        stream,
        (error: Error | null, events: PullEvent[]) => {
          const failed = events.find((event) => event.error !== undefined || event.errorDetail !== undefined);
          if (error) reject(error);
          else if (failed)
            reject(new Error(`pulling ${reference} failed: ${failed.errorDetail?.message ?? failed.error}`));
          else resolve();
        },
        () => checkpoint('pulling'),
      );
    });
  } finally {
    abortSignal?.removeEventListener('abort', stop);
  }
  checkpoint('pulled');
}

/** Stops the container and keeps it, renamed, as a rollback point. Answers how long it took to stop, in ms. */
async function retire(
  docker: Docker,
  target: DockerTarget,
  info: Docker.ContainerInspectInfo,
  fence: Fence,
): Promise<number> {
  const container = docker.getContainer(info.Id);
  const abortSignal = cancellationSignal();
  await beforeChange(fence, `stopping ${info.Name}`);
  // The grace the release asked for when it was created; containers from before kept none and get the default.
  const grace = (info.Config as { StopTimeout?: number }).StopTimeout ?? STOP_TIMEOUT_SECONDS;
  const stopping = performance.now();
  if (info.State.Running) await container.stop({ t: grace, abortSignal });
  const stopMs = Math.round(performance.now() - stopping);
  await beforeChange(fence, `keeping ${info.Name}`);
  await container.rename({ name: keptName(target, info.Config.Labels?.[LABEL.deploymentId] ?? info.Id), abortSignal });
  return stopMs;
}

/** Idempotent: a retry finds its own container by deployment id and only makes sure it runs. */
async function applyRelease(
  target: DockerTarget,
  { deploymentId, version, image, contentHash }: Omit<ApplyRequest, 'target'>,
): Promise<ReleaseState> {
  if (contentHash) requireApprovedSettings(target, image, contentHash);
  return call(target, async (docker) => {
    // Refused before anything changes, the fence included, when the live name is someone else's.
    await liveContainer(docker, target);
    // Read before anything changes too: a secret the worker cannot find stops the release here.
    const secrets = await resolveSecrets(target);
    const fence = dockerFence(docker, target, attemptToken());
    const abortSignal = cancellationSignal();
    await fence.take();
    await pull(docker, image.reference);
    const name = activeName(target);
    const current = await liveContainer(docker, target);
    const ours = current?.Config.Labels?.[LABEL.deploymentId] === deploymentId;
    const previousStopMs = current && !ours ? await retire(docker, target, current, fence) : undefined;
    if (current && ours && current.Name !== `/${name}`) {
      // Our own container under the legacy name: only its name changes.
      await beforeChange(fence, `renaming ${current.Name} to ${name}`);
      await docker.getContainer(current.Id).rename({ name, abortSignal });
    }
    if (!ours) {
      const port = `${target.containerPort}/tcp`;
      const { HostConfig: hardening, ...runAs } = hardenedConfig(target.container);
      await beforeChange(fence, `creating ${name}`);
      await docker
        .createContainer({
          ...runAs,
          abortSignal,
          name,
          Image: image.reference,
          StopTimeout: Math.round((target.container?.stopGracePeriod ?? STOP_TIMEOUT_SECONDS * 1000) / 1000),
          Env: [...Object.entries(target.env).map(([key, value]) => `${key}=${value}`), ...secrets.env],
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
            ...hardening,
          },
        })
        .catch((error: unknown) => {
          throw withoutSecretValues(error, secrets.values);
        });
    }
    const created = await docker.getContainer(name).inspect();
    await beforeChange(fence, `starting ${name}`);
    if (!created.State.Running) await docker.getContainer(name).start({ abortSignal });
    return { ...releaseStateOf(await docker.getContainer(name).inspect()), previousStopMs };
  });
}

/** The containers labelled for this target other than the live one (`live`): its rollback points, newest first. */
async function keptContainers(
  docker: Docker,
  target: DockerTarget,
  live: Docker.ContainerInspectInfo | undefined,
): Promise<Docker.ContainerInspectInfo[]> {
  const listed = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL.service}=${target.service}`, `${LABEL.environment}=${target.environment}`] },
  });
  const infos = await Promise.all(listed.map((c) => docker.getContainer(c.Id).inspect()));
  return infos
    .filter((info) => info.Id !== live?.Id && info.Name !== `/${activeName(target)}`)
    .sort((a, b) => b.State.FinishedAt.localeCompare(a.State.FinishedAt));
}

async function keptReleases(target: DockerTarget): Promise<KeptReleases> {
  return call(target, async (docker) => {
    const { live } = await findLive(docker, target);
    return {
      live: releaseStateOf(live),
      // A kept container is stopped; restoring it starts it again.
      kept: (await keptContainers(docker, target, live)).map((info) => ({ ...releaseStateOf(info), running: true })),
      where: activeName(target),
    };
  });
}

/** After a successful deploy: keep only the newest `historyLimit` rollback points. */
async function pruneHistory(target: DockerTarget): Promise<string[]> {
  return call(target, async (docker) => {
    const { live } = await findLive(docker, target);
    const pruned = (await keptContainers(docker, target, live)).slice(target.historyLimit);
    for (const info of pruned) await docker.getContainer(info.Id).remove({ force: true });
    return pruned.map((info) => info.Name.replace(/^\//, ''));
  });
}

/** Idempotent: brings back exactly the container of `to`, or no container when `to` is absent. */
async function restoreRelease(target: DockerTarget, to: ReleaseState, keepCurrent: boolean): Promise<ReleaseState> {
  return call(target, async (docker) => {
    // Refused before anything changes, the fence included, when the live name or the rollback point is not ours.
    await liveContainer(docker, target);
    const point = to.present && to.handle ? await inspect(docker, to.handle) : undefined;
    if (point && !ownedBy(point, target)) throw fail('invalid', `the rollback point ${notOurs(point, target)}`);
    const fence = dockerFence(docker, target, attemptToken());
    const abortSignal = cancellationSignal();
    await fence.take();
    const name = activeName(target);
    const current = await liveContainer(docker, target);
    if (current && current.Id !== to.handle) {
      if (keepCurrent && current.Config.Labels?.[LABEL.deploymentId]) await retire(docker, target, current, fence);
      else {
        await beforeChange(fence, `removing ${current.Name}`);
        await docker.getContainer(current.Id).remove({ force: true, abortSignal });
      }
    }
    if (!to.present || !to.handle) return releaseStateOf((await findLive(docker, target)).live);
    const wanted = await inspect(docker, to.handle);
    if (!wanted) throw fail('invalid', `the rollback point container ${to.handle.slice(0, 12)} no longer exists`);
    await beforeChange(fence, `bringing back ${wanted.Name}`);
    if (wanted.Name !== `/${name}`) await docker.getContainer(to.handle).rename({ name, abortSignal });
    if (to.running && !wanted.State.Running) await docker.getContainer(to.handle).start({ abortSignal });
    return releaseStateOf(await inspect(docker, name));
  });
}

async function verifyRelease(target: DockerTarget, expected: ReleaseState): Promise<ConsistencyReport> {
  return compareReleases(expected, await liveRelease(target, expected.configHash));
}

/**
 * One container per release: it is added, or its image and configuration changed. Changed variables are named
 * (`env.NAME`), read from both containers while they exist; their values never leave the engine.
 */
async function diffRelease(target: DockerTarget, from: ReleaseState, to: ReleaseState): Promise<ReleaseDiff> {
  const container = `Container/${activeName(target)}`;
  if (!from.present) return { added: [container], removed: [], changed: [], unchanged: 0 };
  const variables =
    from.handle && to.handle
      ? await call(target, async (docker) => {
          const [before, after] = await Promise.all([
            inspect(docker, from.handle ?? ''),
            inspect(docker, to.handle ?? ''),
          ]);
          return before && after ? changedVariables(before.Config.Env ?? [], after.Config.Env ?? []) : [];
        })
      : [];
  const fields = compareReleases(from, to)
    .checks.filter((c) => !c.equal && (c.field === 'imageDigest' || c.field === 'configHash'))
    .map((c) => c.field)
    .concat(variables.map((name) => `env.${name}`));
  return fields.length
    ? { added: [], removed: [], changed: [{ object: container, fields }], unchanged: 0 }
    : { added: [], removed: [], changed: [], unchanged: 1 };
}
