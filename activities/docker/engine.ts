/**
 * The Docker engine as the driver sees it: connections, names, labels and what a container says about its release.
 *
 * Names. Service and environment names are DNS labels (`[a-z0-9-]`), so neither can contain `_` or `.`. The live
 * container of a service in an environment is `<service>_<environment>`: no other pair of names gives the same name
 * (`web-shop_prod` and `web_shop-prod` are two containers). Every other name is derived from it with `.`, which a
 * live name never contains: a kept rollback point is `<service>_<environment>.kept-<suffix>`, the fence volume
 * `<service>_<environment>.fence`.
 *
 * Earlier releases named the live container `<service>-<environment>`, which two pairs can share. A container under
 * that legacy name is still the live release when its labels name this service and environment; the next apply or
 * restore moves the live release to the new name. A container at the live name labelled for anyone else (or for no
 * one) is never taken over.
 */
import { readFileSync } from 'node:fs';
import Docker from 'dockerode';
import { fail, isConnectionError, messageOf, unreachable } from '../../domain/failures.js';
import type { ReleaseState } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { fingerprint } from '../../keys/fingerprint.js';
import { activeName, legacyName, type Named } from './names.js';

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

function engine({ host, tls }: DockerTarget): Docker {
  const key = JSON.stringify([host, tls?.ca, tls?.cert, tls?.key]);
  let docker = engines.get(key);
  if (!docker) {
    const url = new URL(host);
    docker =
      url.protocol === 'unix:'
        ? new Docker({ socketPath: url.pathname, timeout: ENGINE_TIMEOUT_MS })
        : new Docker({
            host: url.hostname,
            // The docker CLI's defaults when the address names no port.
            port: Number(url.port || (tls || url.protocol === 'https:' ? 2376 : 2375)),
            // A tcp:// engine with TLS material speaks https, as the docker CLI's --tlsverify does.
            protocol: url.protocol === 'https:' || tls ? 'https' : 'http',
            ...(tls ? { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : {}),
            timeout: ENGINE_TIMEOUT_MS,
          });
    engines.set(key, docker);
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
    return await action(engine(target));
  } catch (error) {
    if (isConnectionError(error)) throw unreachable(`Docker engine ${target.host}`, error);
    const tlsProblem = tlsFailure(target, error);
    if (tlsProblem) throw tlsProblem;
    const code = statusCode(error);
    if (code === undefined || code < 400) throw error;
    const message = engineMessage(error);
    // Engines answer 400 (20.10 and later) or 500 (earlier) when the runtime cannot start the container.
    if (code < 600 && /OCI runtime|exec format error|executable file not found/i.test(message))
      throw fail('invalid', `Docker engine could not start the container: ${message}`);
    if (code < 500 && !RETRYABLE_CLIENT_ERRORS.has(code)) throw fail('invalid', `Docker engine refused: ${message}`);
    throw error;
  }
}

/**
 * A TLS handshake the engine or the worker refused, or plain HTTP sent to an engine that speaks TLS: the policy's
 * docker settings for the environment are wrong, and no retry can mend them.
 */
function tlsFailure({ host, environment }: DockerTarget, error: unknown): Error | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  const where = `Docker engine ${host} (environments.${environment}.docker.tls in the platform policy)`;
  if (typeof code === 'string' && /^(ERR_SSL|ERR_TLS|UNABLE_TO_VERIFY|DEPTH_ZERO|SELF_SIGNED|CERT_)/.test(code))
    return fail('forbidden', `${where}: TLS handshake failed: ${code}`);
  if (/HTTP request to an HTTPS server/i.test(engineMessage(error)))
    return fail('forbidden', `${where}: the engine requires TLS and the policy gives the worker no client certificate`);
  return undefined;
}

/** What the engine said, without dockerode's request description around it. */
function engineMessage(error: unknown): string {
  const json = (error as { json?: unknown } | undefined)?.json;
  if (typeof json === 'string' && json.trim()) return json.trim();
  const message = (json as { message?: unknown } | null | undefined)?.message;
  if (typeof message === 'string') return message;
  // Streamed answers (a pull) come without a body: dockerode puts it in its message, after `(HTTP code N) what - `.
  return messageOf(error)
    .replace(/^\(HTTP code \d+\) [^-]*- /, '')
    .trim();
}

export { activeName, keptName, legacyName } from './names.js';

/** Whether the container is labelled as a release of this service in this environment. */
export function ownedBy(info: Docker.ContainerInspectInfo, target: Named): boolean {
  const labels = info.Config.Labels ?? {};
  return labels[LABEL.service] === target.service && labels[LABEL.environment] === target.environment;
}

const nameOf = (info: Docker.ContainerInspectInfo): string => info.Name.replace(/^\//, '');

/** Why a container is not this target's to change, naming it and whom its labels say it belongs to. */
export function notOurs(info: Docker.ContainerInspectInfo, target: Named): string {
  const labels = info.Config.Labels ?? {};
  const [service, environment] = [labels[LABEL.service], labels[LABEL.environment]];
  const owner =
    service === undefined && environment === undefined
      ? `an unknown owner (it has no ${LABEL.service} or ${LABEL.environment} label)`
      : `service ${service ?? '(no label)'} in environment ${environment ?? '(no label)'}`;
  const ours = `service ${target.service} in environment ${target.environment}`;
  return `container ${nameOf(info)} belongs to ${owner}, not to ${ours}`;
}

/** Why the live name cannot be used: the container there is someone else's, and it stays as it is. */
export const liveNameTaken = (info: Docker.ContainerInspectInfo, target: Named): string =>
  `${notOurs(info, target)}; it is not taken over: remove or rename it to deploy ${target.service} here`;

/** What occupies a target's names: its live release, and a container at the live name that is someone else's. */
export interface LiveContainers {
  live?: Docker.ContainerInspectInfo;
  foreign?: Docker.ContainerInspectInfo;
}

/**
 * The live release: the container at the live name when it is labelled for this target, else a container under the
 * legacy name labelled for this target. A container at the live name labelled otherwise is reported as `foreign`.
 */
export async function findLive(docker: Docker, target: Named): Promise<LiveContainers> {
  const atName = await inspect(docker, activeName(target));
  if (atName && ownedBy(atName, target)) return { live: atName };
  const legacy = await inspect(docker, legacyName(target));
  return { live: legacy && ownedBy(legacy, target) ? legacy : undefined, foreign: atName };
}

/** The live release, refusing (invalid) when a container that is not this target's holds the live name. */
export async function liveContainer(docker: Docker, target: Named): Promise<Docker.ContainerInspectInfo | undefined> {
  const { live, foreign } = await findLive(docker, target);
  if (foreign) throw fail('invalid', liveNameTaken(foreign, target));
  return live;
}

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

/**
 * The hash of what we manage, read from the live container rather than from our own labels. Keyed: the Env holds
 * secret values, and a plain hash of them in a history could be tested against guesses. `like` is a hash recorded
 * earlier, whose scheme and key this one must use to be comparable with it.
 */
function configHash(info: Docker.ContainerInspectInfo, like?: string): string {
  const managed = {
    image: info.Config.Image,
    env: [...(info.Config.Env ?? [])].sort(),
    cmd: (info.Config.Cmd as string[] | undefined) ?? null,
    ports: (info.HostConfig.PortBindings as Record<string, unknown> | undefined) ?? {},
    labels: Object.entries(info.Config.Labels ?? {}).sort(),
    ...hardeningOf(info),
  };
  return fingerprint(JSON.stringify(managed), like);
}

/**
 * How the container runs (user, privileges, capabilities, host namespaces, mounts, limits), read from the engine.
 * Hashed only for containers created with these settings, so containers from before keep the hash they had.
 */
function hardeningOf(info: Docker.ContainerInspectInfo): { hardening?: unknown } {
  const host = info.HostConfig;
  const list = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : []);
  const [capDrop, capAdd, securityOpt] = [list(host.CapDrop), list(host.CapAdd), list(host.SecurityOpt)];
  if (!capDrop.length && !securityOpt.length) return {};
  return {
    hardening: {
      user: info.Config.User || '',
      securityOpt: securityOpt.sort(),
      capDrop: capDrop.sort(),
      capAdd: capAdd.sort(),
      privileged: host.Privileged ?? false,
      networkMode: host.NetworkMode === 'host' ? 'host' : '',
      pidMode: host.PidMode ?? '',
      binds: [...(host.Binds ?? [])].sort(),
      memory: host.Memory ?? 0,
      nanoCpus: host.NanoCpus ?? 0,
    },
  };
}

export function releaseStateOf(info: Docker.ContainerInspectInfo | undefined, hashLike?: string): ReleaseState {
  if (!info) return { present: false, running: false };
  const labels = info.Config.Labels ?? {};
  const pinned = /@(sha256:[a-f0-9]{64})$/.exec(info.Config.Image)?.[1];
  return {
    present: true,
    handle: info.Id,
    deploymentId: labels[LABEL.deploymentId],
    version: labels[LABEL.version],
    imageDigest: pinned ?? info.Image,
    configHash: configHash(info, hashLike),
    running: info.State.Running,
  };
}
