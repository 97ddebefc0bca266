/**
 * Many deploys at once through one worker process: `concurrency` distinct services, each on its own host port, all
 * started together and awaited. The deploys are started with the CLI's own client library (client/), in this
 * process: that many CLI processes at once would measure Node starting on a small machine, not the worker.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { closeConnections, connect } from '../client/connection.js';
import { startDeploy } from '../client/deploy.js';
import { loadSpecFile } from '../client/spec-file.js';
import type { DeploymentStatus } from '../domain/deployment.js';
import { BENCH_ENVIRONMENT, BENCH_VERSIONS, type BenchDockerStack, startBenchDockerStack } from './docker-stack.js';
import { type BenchSuite, formatMs, median, percentile, timed } from './measure.js';

const MAX_RSS_MB = 500;
const MAX_P95_TIMES_SINGLE = 3;
// Many containers starting at once on two cores take a while to answer: the goal is correctness, not this bound.
const HEALTHY_WITHIN = '180s';
// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ) on every architecture Node runs on.
const CLOCK_TICKS_PER_SECOND = 100;

export const concurrencySuite: BenchSuite = async (options) => {
  const concurrent = Array.from({ length: options.concurrency }, (_, i) => `bench-many-${i}`);
  const singles = Array.from({ length: options.runs }, (_, i) => `bench-single-${i}`);
  const stack = await startBenchDockerStack(options.workDir, {
    services: [...singles, ...concurrent],
    healthyWithin: HEALTHY_WITHIN,
  });
  const restoreEnv = await clientEnvironment(stack, join(options.workDir, 'client-config'));
  try {
    const client = await connect();
    const deploy = async (service: string) => {
      const loaded = await loadSpecFile(await stack.specFile(service));
      const { ms, value: status } = await timed(async () => {
        const handle = await startDeploy(client, loaded, { env: BENCH_ENVIRONMENT, version: BENCH_VERSIONS[0] });
        return (await handle.result()) as DeploymentStatus;
      });
      return { service, ms, state: status.state };
    };

    // The baseline: one deploy with nothing else running, a first release of its service like each concurrent one.
    const single: number[] = [];
    for (const service of singles) {
      const result = await deploy(service);
      if (result.state !== 'succeeded') throw new Error(`the single deploy of ${service} ended ${result.state}`);
      single.push(result.ms);
    }

    const before = workerUsage(stack.worker.pid);
    const { ms: wallMs, value: results } = await timed(() =>
      Promise.all(concurrent.map((service) => deploy(service).catch((error: unknown) => failed(service, error)))),
    );
    const after = workerUsage(stack.worker.pid);

    const times = results.map((r) => r.ms).filter((ms) => Number.isFinite(ms));
    const succeeded = results.filter((r) => r.state === 'succeeded').length;
    const others = results.filter((r) => r.state !== 'succeeded');
    const p95 = percentile(times, 0.95);
    const singleMs = median(single);
    const n = options.concurrency;
    const perDeployMb = (after.peakRssMb - before.rssMb) / n;
    return [
      {
        operation: `${n} concurrent deploys (Docker)`,
        agent: formatMs(wallMs),
        notes:
          `wall time, all started at once with the client library in-process; per deploy p50 ` +
          `${formatMs(percentile(times, 0.5))}, p95 ${formatMs(p95)}`,
      },
      {
        operation: 'concurrent deploys correct',
        agent: `${succeeded}/${n} succeeded`,
        goal: 'all',
        met: succeeded === n,
        notes: others.length ? ended(others) : '',
      },
      {
        operation: 'p95 of concurrent vs single deploy',
        agent: formatMs(p95),
        raw: formatMs(singleMs),
        ratio: p95 / singleMs,
        goal: `≤ ${MAX_P95_TIMES_SINGLE}x`,
        met: p95 / singleMs <= MAX_P95_TIMES_SINGLE,
        notes: `raw column: one deploy alone through the same worker (median of ${single.length})`,
      },
      {
        operation: 'worker peak RSS',
        agent: `${Math.round(after.peakRssMb)} MB`,
        goal: `≤ ${MAX_RSS_MB} MB`,
        met: after.peakRssMb <= MAX_RSS_MB,
        notes:
          `VmHWM of the worker process; ${Math.round(before.rssMb)} MB before the burst, ` +
          `≈ ${perDeployMb.toFixed(2)} MB per running deploy`,
      },
      {
        operation: 'worker CPU',
        agent: `${(after.cpuSeconds - before.cpuSeconds).toFixed(1)} s`,
        notes:
          `utime+stime of the worker during the burst (${((after.cpuSeconds - before.cpuSeconds) / n).toFixed(3)} s ` +
          `per deploy, ${after.cpuSeconds.toFixed(1)} s since it started)`,
      },
    ];
  } finally {
    await closeConnections().catch(() => undefined);
    restoreEnv();
    await stack.stop();
  }
};

interface DeployResult {
  service: string;
  ms: number;
  state: string;
}

function failed(service: string, error: unknown): DeployResult {
  return { service, ms: Number.NaN, state: `error: ${error instanceof Error ? error.message : String(error)}` };
}

function ended(results: DeployResult[]): string {
  const byState = new Map<string, string[]>();
  for (const r of results) byState.set(r.state, [...(byState.get(r.state) ?? []), r.service]);
  return [...byState].map(([state, services]) => `${services.length} ${state} (e.g. ${services[0]})`).join('; ');
}

/**
 * The client library reads its settings from the environment, as the CLI does: Temporal's address, the payload keys,
 * the requester's name, and a config home of its own so that a login cached on this machine stays out of it.
 * Answers a function that puts the environment back.
 */
async function clientEnvironment(stack: BenchDockerStack, configHome: string): Promise<() => void> {
  await mkdir(configHome, { recursive: true });
  const wanted: Record<string, string> = { ...stack.cliEnv, XDG_CONFIG_HOME: configHome };
  const saved = Object.fromEntries(Object.keys(wanted).map((key) => [key, process.env[key]]));
  Object.assign(process.env, wanted);
  return () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

interface WorkerUsage {
  rssMb: number;
  peakRssMb: number;
  cpuSeconds: number;
}

/** The worker's resident memory now and at its peak (VmRSS, VmHWM) and its CPU time (utime + stime). */
function workerUsage(pid: number): WorkerUsage {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself hold spaces: state is field 3, utime 14 and stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024, cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND };
}
