/**
 * Whether a namespace's ResourceQuotas and LimitRanges leave room for a release, computed the way admission would:
 * per-pod requests and limits (LimitRange defaults filling gaps) times replicas.
 */
import type { KubeObject } from './client.js';
import { describe, podSpecsOf, refOf } from './manifests.js';

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

export function parseQuantity(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return undefined;
  const match = /^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$/.exec(value.trim());
  const factor = match ? SUFFIX[match[2] ?? ''] : undefined;
  return match && factor !== undefined ? Number(match[1]) * factor : undefined;
}

export function formatQuantity(resource: string, value: number): string {
  if (resource.endsWith('cpu')) return `${Math.round(value * 1000)}m`;
  if (resource.endsWith('memory')) return `${Math.round((value / 2 ** 20) * 10) / 10}Mi`;
  return String(Math.round(value * 1000) / 1000);
}

type Amounts = Record<string, number>;
type Resources = Record<string, unknown>;
const RESOURCES = ['cpu', 'memory'] as const;
// Quotas may name the same thing two ways; count both against one amount.
const QUOTA_KEYS: Record<string, string> = {
  cpu: 'requests.cpu',
  memory: 'requests.memory',
  'requests.cpu': 'requests.cpu',
  'requests.memory': 'requests.memory',
  'limits.cpu': 'limits.cpu',
  'limits.memory': 'limits.memory',
  pods: 'pods',
  'count/pods': 'pods',
};

interface ContainerLimits {
  source: string;
  defaultRequest: Resources;
  default: Resources;
  max: Resources;
  min: Resources;
}

function containerLimits(limitRanges: KubeObject[]): ContainerLimits[] {
  return limitRanges.flatMap((range) =>
    (((range.spec as { limits?: Record<string, unknown>[] } | undefined)?.limits ?? []) as Record<string, Resources>[])
      .filter((l) => (l.type as unknown) === 'Container')
      .map((l) => ({
        source: describe(refOf(range)),
        defaultRequest: l.defaultRequest ?? {},
        default: l.default ?? {},
        max: l.max ?? {},
        min: l.min ?? {},
      })),
  );
}

function replicasOf(object: KubeObject): number {
  const spec = (object.spec ?? {}) as Record<string, unknown>;
  if (object.kind === 'Pod') return 1;
  if (object.kind === 'Job') return typeof spec.parallelism === 'number' ? spec.parallelism : 1;
  if (object.kind === 'DaemonSet' || object.kind === 'CronJob') return 0; // depends on nodes or on time
  return typeof spec.replicas === 'number' ? spec.replicas : 1;
}

/**
 * A pod's effective amounts, as the scheduler and quota count them: its containers and sidecars (init containers
 * that keep running) add up; a plain init container runs alone, beside the sidecars started before it, so it counts
 * only when it needs more than that sum.
 */
function effectivePodAmounts(
  podSpec: Record<string, unknown>,
  amountsOf: (container: Record<string, unknown>) => Amounts,
): Amounts {
  const list = (key: string) => (Array.isArray(podSpec[key]) ? (podSpec[key] as unknown[]) : []).filter(isRecord);
  const add = (into: Amounts, from: Amounts) => {
    for (const [key, value] of Object.entries(from)) into[key] = (into[key] ?? 0) + value;
  };
  const sidecars: Amounts = {};
  const initPeaks: Amounts[] = [];
  for (const init of list('initContainers')) {
    const amounts = amountsOf(init);
    if (init.restartPolicy === 'Always') add(sidecars, amounts);
    else {
      const peak = { ...sidecars };
      add(peak, amounts);
      initPeaks.push(peak);
    }
  }
  const effective = { ...sidecars };
  for (const container of list('containers')) add(effective, amountsOf(container));
  for (const peak of initPeaks)
    for (const [key, value] of Object.entries(peak)) effective[key] = Math.max(effective[key] ?? 0, value);
  return effective;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Requests and limits of the release's pods, and the LimitRange violations of its containers. */
export function releaseAmounts(objects: KubeObject[], limitRanges: KubeObject[]) {
  const ranges = containerLimits(limitRanges);
  const total: Amounts = {};
  const problems: string[] = [];
  for (const object of objects) {
    const replicas = replicasOf(object);
    for (const podSpec of podSpecsOf(object)) {
      const amountsOf = (container: Record<string, unknown>): Amounts => {
        const amounts: Amounts = {};
        const resources = (container.resources ?? {}) as { requests?: Resources; limits?: Resources };
        for (const resource of RESOURCES) {
          const pick = (...candidates: unknown[]) => candidates.map(parseQuantity).find((v) => v !== undefined);
          const limit = pick(resources.limits?.[resource], ...ranges.map((r) => r.default[resource]));
          // As the API server defaults them: a limit set without a request is also the request.
          const request = pick(
            resources.requests?.[resource],
            resources.limits?.[resource],
            ...ranges.map((r) => r.defaultRequest[resource]),
            limit,
          );
          amounts[`requests.${resource}`] = request ?? 0;
          amounts[`limits.${resource}`] = limit ?? 0;
          for (const range of ranges) {
            const max = parseQuantity(range.max[resource]);
            const min = parseQuantity(range.min[resource]);
            const what = `${describe(refOf(object))} container ${String(container.name)}`;
            if (max !== undefined && (limit ?? request ?? 0) > max)
              problems.push(
                `${what}: ${resource} ${formatQuantity(resource, limit ?? request ?? 0)} exceeds the maximum ${formatQuantity(resource, max)} of ${range.source}`,
              );
            if (min !== undefined && request !== undefined && request < min)
              problems.push(
                `${what}: ${resource} ${formatQuantity(resource, request)} is below the minimum ${formatQuantity(resource, min)} of ${range.source}`,
              );
          }
        }
        return amounts;
      };
      const pod: Amounts = { pods: 1, ...effectivePodAmounts(podSpec, amountsOf) };
      for (const [key, value] of Object.entries(pod)) total[key] = (total[key] ?? 0) + value * replicas;
    }
  }
  return { total, problems };
}

/**
 * Quotas without room for the release. What the release's own live pods use now is counted as free: the release
 * replaces them.
 */
export function quotaProblems(quotas: KubeObject[], needed: Amounts, replaced: Amounts): string[] {
  const problems: string[] = [];
  for (const quota of quotas) {
    const status = (quota.status ?? {}) as { hard?: Resources; used?: Resources };
    const hard = status.hard ?? (quota.spec as { hard?: Resources } | undefined)?.hard ?? {};
    for (const [key, hardValue] of Object.entries(hard)) {
      const amount = QUOTA_KEYS[key];
      const limit = parseQuantity(hardValue);
      if (!amount || limit === undefined) continue;
      const used = parseQuantity(status.used?.[key]) ?? 0;
      const free = limit - used + (replaced[amount] ?? 0);
      const need = needed[amount] ?? 0;
      if (need > free + 1e-9)
        problems.push(
          `${describe(refOf(quota))}: ${key} would be exceeded: the release needs ${formatQuantity(key, need)}, ` +
            `${formatQuantity(key, Math.max(0, free))} is free (hard ${formatQuantity(key, limit)}, used ${formatQuantity(key, used)})`,
        );
    }
  }
  return problems;
}
