/**
 * How a release's container runs: the safe defaults (no new privileges, every capability dropped) and what the spec
 * sets (user, limits, and the departures the security rules judge before anything runs). The security check reads
 * the same settings the driver creates the container with.
 */
import type { DockerContainerSettings } from '../../domain/target.js';

const UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  Ki: 1024,
  m: 1024 ** 2,
  Mi: 1024 ** 2,
  g: 1024 ** 3,
  Gi: 1024 ** 3,
};

/** `256m`, `1Gi`, `1048576`: bytes; 0 when no size is given. */
export function memoryBytes(size: string | undefined): number {
  const match = size === undefined ? null : /^([0-9]+)(b|k|m|g|Ki|Mi|Gi)?$/.exec(size);
  if (!match) return 0;
  return Number(match[1]) * (UNITS[match[2] ?? 'b'] ?? 1);
}

export const DEFAULT_CONTAINER: DockerContainerSettings = {
  privileged: false,
  capabilities: [],
  hostNetwork: false,
  hostPid: false,
  mounts: [],
  resources: {},
};

/** The container-creation fields the settings decide: `User` and the HostConfig's security and limit fields. */
export function hardenedConfig(settings: DockerContainerSettings = DEFAULT_CONTAINER) {
  const memory = memoryBytes(settings.resources.memory);
  return {
    ...(settings.user ? { User: settings.user } : {}),
    HostConfig: {
      SecurityOpt: ['no-new-privileges:true'],
      CapDrop: ['ALL'],
      ...(settings.capabilities.length ? { CapAdd: settings.capabilities } : {}),
      Privileged: settings.privileged,
      ...(settings.hostNetwork ? { NetworkMode: 'host' } : {}),
      ...(settings.hostPid ? { PidMode: 'host' } : {}),
      ...(settings.mounts.length
        ? { Binds: settings.mounts.map((m) => `${m.source}:${m.target}:${m.readOnly ? 'ro' : 'rw'}`) }
        : {}),
      ...(memory ? { Memory: memory } : {}),
      ...(settings.resources.cpus ? { NanoCpus: Math.round(settings.resources.cpus * 1e9) } : {}),
    },
  };
}
