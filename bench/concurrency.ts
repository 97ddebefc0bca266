/**
 * Many deploys at once through one worker process: `concurrency` distinct services, each on its own host port, all
 * started together and awaited. The deploys are started with the CLI's own client library (client/), in this
 * process: that many CLI processes at once would measure Node starting on a small machine, not the worker.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { closeConnections, connect } from '../client/connection.js';
import { startDeploy } from '../client/deploy.js';
import { loadSpecFile } from '../client/spec-file.js';
import type { DeploymentStatus } from '../domain/deployment.js';
import { BENCH_ENVIRONMENT, BENCH_VERSIONS, type BenchDockerStack, startBenchDockerStack } from './docker-stack.js';
import { topLevelPhases } from './docker-timing.js';
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
      const startedAt = Date.now();
      const { ms, value: status } = await timed(async () => {
        const handle = await startDeploy(client, loaded, { env: BENCH_ENVIRONMENT, version: BENCH_VERSIONS[0] });
        return (await handle.result()) as DeploymentStatus;
      });
      return { service, ms, state: status.state, startedAt, status };
    };

    // The baseline: one deploy with nothing else running, a first release of its service like each concurrent one.
    const single: number[] = [];
    for (const service of singles) {
      const result = await deploy(service);
      if (result.state !== 'succeeded') throw new Error(`the single deploy of ${service} ended ${result.state}`);
      single.push(result.ms);
    }

    const before = workerUsage(stack.worker.pid);
    const machineBefore = machineBusySeconds();
    const { ms: wallMs, value: results } = await timed(() =>
      Promise.all(concurrent.map((service) => deploy(service).catch((error: unknown) => failed(service, error)))),
    );
    const after = workerUsage(stack.worker.pid);
    const machineBusy = machineBusySeconds() - machineBefore;

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
          `per deploy, ${after.cpuSeconds.toFixed(1)} s since it started); the whole machine was busy ` +
          `${machineBusy.toFixed(1)} s of ${((wallMs / 1000) * cpus().length).toFixed(1)} CPU-seconds`,
      },
      {
        operation: 'one concurrent deploy, taken apart (medians)',
        agent: formatMs(percentile(times, 0.5)),
        notes: takenApart(results),
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
  /** Date.now() just before the start call. */
  startedAt?: number;
  status?: DeploymentStatus;
}

function failed(service: string, error: unknown): DeployResult {
  return { service, ms: Number.NaN, state: `error: ${error instanceof Error ? error.message : String(error)}` };
}

/**
 * Where a deploy's time went while all ran at once, as medians over the deploys: from the start call to the
 * workflow's start, each phase (inner phases in brackets), and from the workflow's end to its result reaching us.
 */
function takenApart(results: DeployResult[]): string {
  const samples = new Map<string, number[]>();
  const add = (name: string, ms: number) => samples.set(name, [...(samples.get(name) ?? []), ms]);
  const order: string[] = [];
  const inner = new Map<string, Set<string>>();
  for (const { startedAt, ms, status } of results) {
    if (!status || startedAt === undefined || !status.finishedAt) continue;
    const started = Date.parse(status.startedAt);
    const finished = Date.parse(status.finishedAt);
    add('start call→workflow start', started - startedAt);
    const phases = topLevelPhases(status.phases);
    add('workflow start→first phase', (phases[0]?.start ?? started) - started);
    for (const phase of phases) {
      if (!order.includes(phase.name)) order.push(phase.name);
      add(phase.name, phase.ms);
      for (const p of phase.inner) {
        inner.set(phase.name, (inner.get(phase.name) ?? new Set()).add(p.name));
        add(`${phase.name}/${p.name}`, p.ms);
      }
    }
    add('workflow end→result', startedAt + ms - finished);
  }
  const med = (name: string) => formatMs(median(samples.get(name) ?? [Number.NaN]));
  return [
    `start call→workflow start ${med('start call→workflow start')}`,
    `workflow start→first phase ${med('workflow start→first phase')}`,
    ...order.map((name) => {
      const parts = [...(inner.get(name) ?? [])].map((p) => `${p} ${med(`${name}/${p}`)}`);
      return `${name} ${med(name)}${parts.length ? ` [${parts.join(', ')}]` : ''}`;
    }),
    `workflow end→result ${med('workflow end→result')}`,
  ].join('; ');
}

/** CPU time the whole machine spent busy (all but idle and iowait) since boot, from /proc/stat. */
function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND;
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
