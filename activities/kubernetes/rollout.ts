/**
 * Rollout progress of the release's workloads, read from what their controllers report, with heartbeats while it
 * lasts. A workload that misses its progress deadline, or a wait that runs out of time, is a release that is unhealthy.
 */
import { Context } from '@temporalio/activity';
import { fail } from '../../domain/failures.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import { connect, type Cluster, type KubeObject } from './client.js';
import { WORKLOAD_KINDS, describe, loadManifests, refOf, type ObjectRef } from './manifests.js';
import { readObject } from './objects.js';
import { workloadStatus } from './workloads.js';

const DEFAULT_INTERVAL_MS = 1_000;
const MAX_PODS_NAMED = 5;

/** How a long wait reports that it is alive; injectable so the wait also runs outside an activity. */
export interface Progress {
  beat(details: unknown): void;
  sleep(ms: number): Promise<void>;
}

const plainSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Heartbeats (and cancellation) when running as an activity; nothing but timers otherwise. */
export function activityProgress(): Progress {
  let context: Context | undefined;
  try {
    context = Context.current();
  } catch {
    context = undefined;
  }
  if (!context) return { beat: () => undefined, sleep: plainSleep };
  const current = context;
  return { beat: (details) => current.heartbeat(details), sleep: (ms) => current.sleep(ms) };
}

/** Pods of the workload that are not Ready, with the reason their containers or conditions give. */
async function unreadyPods(cluster: Cluster, workload: KubeObject): Promise<string[]> {
  const matchLabels = (workload.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)?.selector
    ?.matchLabels;
  if (!matchLabels) return [];
  const labelSelector = Object.entries(matchLabels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
  const pods = await cluster.request<{ items?: KubeObject[] }>(
    'GET',
    `/api/v1/namespaces/${encodeURIComponent(workload.metadata.namespace ?? '')}/pods`,
    {
      query: { labelSelector },
    },
  );
  const named: string[] = [];
  for (const pod of pods.items ?? []) {
    const status = (pod.status ?? {}) as {
      phase?: string;
      conditions?: { type?: string; status?: string; reason?: string; message?: string }[];
      containerStatuses?: { name?: string; ready?: boolean; state?: { waiting?: { reason?: string } } }[];
    };
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    if (ready?.status === 'True' || pod.metadata.deletionTimestamp) continue;
    const waiting = status.containerStatuses?.find((c) => c.state?.waiting?.reason)?.state?.waiting?.reason;
    const notReady = status.containerStatuses?.filter((c) => !c.ready).map((c) => c.name);
    const why =
      waiting ?? (notReady?.length ? `containers not ready: ${notReady.join(',')}` : (ready?.reason ?? status.phase));
    named.push(`${pod.metadata.name} (${status.phase ?? 'Unknown'}, ${why ?? 'not ready'})`);
  }
  return named.length > MAX_PODS_NAMED
    ? [...named.slice(0, MAX_PODS_NAMED), `${named.length - MAX_PODS_NAMED} more`]
    : named;
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  progress?: Progress;
}

/** Waits until every workload finished rolling out; throws Unhealthy naming the workload and why. */
export async function waitForWorkloads(cluster: Cluster, refs: ObjectRef[], options: WaitOptions): Promise<string> {
  const progress = options.progress ?? activityProgress();
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const deadline = Date.now() + options.timeoutMs;
  const maxRounds = Math.ceil(options.timeoutMs / intervalMs) + 1;
  let lines: string[] = [];
  let pending: KubeObject | undefined;
  for (let round = 0; round < maxRounds; round++) {
    lines = [];
    pending = undefined;
    for (const ref of refs) {
      const workload = await readObject(cluster, ref);
      if (!workload) {
        lines.push(`${describe(ref)}: not found`);
        continue;
      }
      const status = workloadStatus(workload);
      if (status.failure) {
        const pods = await unreadyPods(cluster, workload);
        throw fail(
          'unhealthy',
          `${describe(ref)} failed to roll out: ${status.failure} (${status.detail})` +
            (pods.length ? `; pods not ready: ${pods.join('; ')}` : ''),
        );
      }
      lines.push(`${describe(ref)}: ${status.detail}`);
      if (!status.done) pending ??= workload;
    }
    const missing = lines.some((l) => l.endsWith(': not found'));
    if (!pending && !missing) return lines.join('; ') || 'no workloads to wait for';
    progress.beat({ rollout: lines });
    if (Date.now() + intervalMs > deadline) break;
    await progress.sleep(intervalMs);
  }
  const pods = pending ? await unreadyPods(cluster, pending) : [];
  throw fail(
    'unhealthy',
    `rollout did not finish within ${options.timeoutMs} ms: ${lines.join('; ')}` +
      (pods.length ? `; pods not ready: ${pods.join('; ')}` : ''),
  );
}

export const workloadRefs = (objects: KubeObject[]): ObjectRef[] =>
  objects.filter((o) => WORKLOAD_KINDS.has(o.kind)).map(refOf);

export interface RolloutOptions {
  timeoutMs: number;
  intervalMs?: number;
  progress?: Progress;
}

/** After applyRelease: the detail of every workload once all of them are rolled out. */
export async function awaitRollout(target: KubernetesTarget, options: RolloutOptions): Promise<string> {
  const objects = await loadManifests(target);
  return waitForWorkloads(connect(target), workloadRefs(objects), options);
}
