/**
 * The content of a Docker release and its plan: the effective container settings (image, port, plain env, secrets by
 * reference name, runtime settings) as one hash, and which of them differ from the live container, by name only.
 */
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { fail } from '../../domain/failures.js';
import type { ReleasePlan } from '../../domain/plan.js';
import type { PinnedImage } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { call, findLive, releaseStateOf } from './engine.js';

/** Setting name -> value. Values stay inside the worker: only the hash and the names of changed settings leave it. */
type Settings = Map<string, string>;

/** A default (off, empty, zero) is no setting: a container created before a field existed compares equal. */
const isDefault = (value: string): boolean => value === '' || value === 'false' || value === '0';

function settingsOf(entries: [string, string | undefined][]): Settings {
  return new Map(
    entries.flatMap(([name, value]) => (value === undefined || isDefault(value) ? [] : [[name, value] as const])),
  );
}

const UNITS: Record<string, number> = {
  b: 1,
  k: 2 ** 10,
  ki: 2 ** 10,
  m: 2 ** 20,
  mi: 2 ** 20,
  g: 2 ** 30,
  gi: 2 ** 30,
};

/** `256m` or `1Gi` in bytes, as the engine records a memory limit. */
export function memoryBytes(size: string): number {
  const [, amount = '0', unit = 'b'] = /^([0-9]+)([A-Za-z]*)$/.exec(size) ?? [];
  return Number(amount) * (UNITS[unit.toLowerCase()] ?? 1);
}

const portSetting = (containerPort: number | string, hostIp: string, hostPort: number | string): string =>
  `${containerPort}/tcp ${hostIp}:${hostPort}`;

const mountSetting = (mounts: { source: string; target: string; readOnly: boolean }[]): string =>
  mounts
    .map((m) => `${m.source}:${m.target}:${m.readOnly ? 'ro' : 'rw'}`)
    .sort()
    .join(',');

/** The settings apply gives the container: from the target the workflow recorded, so fixed for the whole run. */
export function intendedSettings(target: DockerTarget, image: PinnedImage): Settings {
  const runtime = target.container;
  return settingsOf([
    ['image', image.digest],
    ['port', portSetting(target.containerPort, target.hostIp, target.hostPort)],
    ...Object.entries(target.env).map(([name, value]): [string, string] => [`env.${name}`, value]),
    ...Object.entries(runtime?.secrets ?? {}).map(([name, secret]): [string, string] => [`secrets.${name}`, secret]),
    ['user', runtime?.user],
    ['privileged', String(runtime?.privileged ?? false)],
    ['capabilities', [...(runtime?.capabilities ?? [])].sort().join(',')],
    ['hostNetwork', String(runtime?.hostNetwork ?? false)],
    ['hostPid', String(runtime?.hostPid ?? false)],
    ['resources.memory', runtime?.resources.memory && String(memoryBytes(runtime.resources.memory))],
    ['resources.cpus', runtime?.resources.cpus === undefined ? undefined : String(runtime.resources.cpus)],
    ['mounts', mountSetting(runtime?.mounts ?? [])],
    [
      'stopGracePeriod',
      graceSetting(runtime?.stopGracePeriod === undefined ? undefined : runtime.stopGracePeriod / 1000),
    ],
  ]);
}

/** The engine's default grace (10 s) is no setting: containers created before the field compare equal. */
const graceSetting = (seconds: number | undefined): string | undefined =>
  seconds === undefined || seconds === 10 ? undefined : `${seconds}s`;

/**
 * The same settings read from a live container. Its environment also holds the image's own variables (PATH, ...),
 * which are left out; a variable the new release fills from a secret reference is that secret, whose value is not
 * compared (the reference it came from is not recorded on the container). Its user is the image's own `USER` when
 * the spec set none: that is no setting of the release either.
 */
export function liveSettings(
  info: Docker.ContainerInspectInfo,
  imageEnv: readonly string[],
  intended: Settings,
  imageUser = '',
): Settings {
  const user = info.Config.User === imageUser && !intended.has('user') ? undefined : info.Config.User;
  const host = info.HostConfig;
  const [port, bindings] =
    Object.entries((host.PortBindings ?? {}) as Record<string, { HostIp?: string; HostPort?: string }[]>)[0] ?? [];
  const env = (info.Config.Env ?? []).filter((entry) => !imageEnv.includes(entry));
  const binds = (host.Binds ?? []).map((bind) => {
    const [source = '', target = '', mode = ''] = bind.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
  const mounts = (host.Mounts ?? [])
    .filter((m) => m.Type === 'bind')
    .map((m) => ({ source: m.Source, target: m.Target, readOnly: m.ReadOnly ?? false }));
  return settingsOf([
    ['image', releaseStateOf(info).imageDigest],
    [
      'port',
      port && bindings?.[0]
        ? portSetting(port.replace('/tcp', ''), bindings[0].HostIp ?? '', bindings[0].HostPort ?? '')
        : undefined,
    ],
    ...env.map((entry): [string, string] => {
      const at = entry.indexOf('=');
      const name = at === -1 ? entry : entry.slice(0, at);
      const secret = `secrets.${name}`;
      return intended.has(secret) ? [secret, intended.get(secret) ?? ''] : [`env.${name}`, entry.slice(at + 1)];
    }),
    ['user', user],
    ['privileged', String(host.Privileged ?? false)],
    ['capabilities', [...((host.CapAdd as string[] | null | undefined) ?? [])].sort().join(',')],
    ['hostNetwork', String(host.NetworkMode === 'host')],
    ['hostPid', String(host.PidMode === 'host')],
    ['resources.memory', String(host.Memory ?? 0)],
    ['resources.cpus', host.NanoCpus ? String(host.NanoCpus / 1e9) : undefined],
    ['mounts', mountSetting([...binds, ...mounts])],
    ['stopGracePeriod', graceSetting((info.Config as { StopTimeout?: number }).StopTimeout)],
  ]);
}

function hashOf(settings: Settings): string {
  const canonical = [...settings.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const text = JSON.stringify({ format: 1, kind: 'docker', settings: canonical });
  return `sha256:${createHash('sha256').update(text).digest('hex')}`;
}

export const dockerContentHash = (target: DockerTarget, image: PinnedImage): string =>
  hashOf(intendedSettings(target, image));

/** Apply's guard: the settings apply is about to use must be the ones validated and approved. */
export function requireApprovedSettings(target: DockerTarget, image: PinnedImage, approved: string): void {
  const now = dockerContentHash(target, image);
  if (now !== approved)
    throw fail(
      'contentChanged',
      `the container settings changed after validation and approval (content ${now}, approved ${approved}); ` +
        'nothing was changed: deploy again to validate and approve the new content',
    );
}

/** The names of the settings that differ between two sets, sorted. */
export function changedSettings(before: Settings, after: Settings): string[] {
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names].filter((name) => before.get(name) !== after.get(name)).sort();
}

export async function dockerPlan(target: DockerTarget, image: PinnedImage): Promise<ReleasePlan> {
  return call(target, async (docker) => {
    const intended = intendedSettings(target, image);
    const { live } = await findLive(docker, target);
    const liveImage = live
      ? await docker
          .getImage(live.Image)
          .inspect()
          .catch(() => undefined)
      : undefined;
    const configChanges = live
      ? changedSettings(
          liveSettings(live, liveImage?.Config.Env ?? [], intended, liveImage?.Config.User ?? ''),
          intended,
        )
      : [...intended.keys()].sort();
    const imageChanged = releaseStateOf(live).imageDigest !== image.digest;
    return {
      contentHash: hashOf(intended),
      imageChanged,
      unchanged: configChanges.length === 0,
      configChanges,
    };
  });
}
