/**
 * Deploy and rollback on the Docker target: `deploy-agent deploy --wait` and `deploy-agent rollback --wait`, the real
 * CLI process as CI runs it, against a docker-CLI script doing the same replace and health wait on the same engine.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DeploymentStatus } from '../domain/deployment.js';
import { freePort } from '../stack/processes.js';
import { deploymentIdIn, runCli, type CliResult } from '../test/support/cli.js';
import { BENCH_ENVIRONMENT, BENCH_VERSIONS, type BenchDockerStack, startBenchDockerStack } from './docker-stack.js';
import { type BenchRow, type BenchSuite, formatMs, median, timed } from './measure.js';

const RAW_DEPLOY = fileURLToPath(new URL('../../bench/docker-raw-deploy.sh', import.meta.url));
const SERVICE = 'bench-web';
const RAW_CONTAINER = 'bench-web-raw';
// What the agent uses (activities/docker/driver.ts) when the spec sets no container.stopGracePeriod, and what the
// spec fixture's health check says: the raw script gets the same.
const STOP_GRACE_SECONDS = 10;
const CONTAINER_PORT = 8080;
const HEALTH_PATH = '/health';
const HEALTH_POLL_SECONDS = 0.2;
const HEALTHY_WITHIN_SECONDS = 8;
const CLI_TIMEOUT_MS = 180_000;

export const dockerSuite: BenchSuite = async (options) => {
  const stack = await startBenchDockerStack(options.workDir, { services: [SERVICE] });
  try {
    const rawPort = await freeRawPort(stack);
    const agent = new AgentRuns(stack, await stack.specFile(SERVICE));
    const raw = new RawRuns(stack, rawPort);
    const versions = (i: number) => BENCH_VERSIONS[i % 2]!;

    // Each side starts from a running release, so that every timed deploy replaces one.
    await agent.deploy(versions(0));
    await raw.deploy(versions(0));
    const agentDeploys: number[] = [];
    const rawDeploys: number[] = [];
    let lastDeploy: TimedCli | undefined;
    for (let i = 1; i <= options.runs; i++) {
      lastDeploy = await agent.deploy(versions(i));
      agentDeploys.push(lastDeploy.ms);
      rawDeploys.push(await raw.deploy(versions(i)));
    }

    // A rollback undoes the deploy before it: each run first deploys the other version (not timed), then goes back.
    const live = versions(options.runs);
    const other = versions(options.runs + 1);
    const agentRollbacks: number[] = [];
    const rawRollbacks: number[] = [];
    for (let i = 0; i < options.runs; i++) {
      await agent.deploy(other);
      agentRollbacks.push((await agent.rollback()).ms);
      await raw.deploy(other);
      rawRollbacks.push(await raw.deploy(live));
    }

    const breakdown = lastDeploy ? await whereTheTimeGoes(stack, lastDeploy) : undefined;
    return [
      comparison(
        'deploy (Docker)',
        agentDeploys,
        rawDeploys,
        1.3,
        'agent: deploy --wait (CLI process); raw: pull, stop, rm, run, health poll',
      ),
      comparison(
        'rollback (Docker)',
        agentRollbacks,
        rawRollbacks,
        1.5,
        'agent: rollback --wait restores the kept container; raw: the script to the previous version',
      ),
      ...(breakdown ? [breakdown] : []),
    ];
  } finally {
    await stack.stop();
  }
};

interface TimedCli {
  ms: number;
  /** Date.now() just before the CLI process was spawned: compared with the workflow's own times. */
  spawnedAt: number;
  result: CliResult;
}

class AgentRuns {
  constructor(
    private readonly stack: BenchDockerStack,
    private readonly specFile: string,
  ) {}

  deploy(version: string): Promise<TimedCli> {
    return this.cli(['deploy', '-f', this.specFile, '--env', BENCH_ENVIRONMENT, '--version', version, '--wait']);
  }

  rollback(): Promise<TimedCli> {
    return this.cli(['rollback', '-f', this.specFile, '--service', SERVICE, '--env', BENCH_ENVIRONMENT, '--wait']);
  }

  private async cli(args: string[]): Promise<TimedCli> {
    const spawnedAt = Date.now();
    const { ms, value: result } = await timed(() => runCli(args, this.stack.cliEnv, CLI_TIMEOUT_MS));
    if (result.code !== 0)
      throw new Error(`deploy-agent ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    return { ms, spawnedAt, result };
  }
}

class RawRuns {
  constructor(
    private readonly stack: BenchDockerStack,
    private readonly port: number,
  ) {}

  /** The script as a whole process, from spawn to exit. */
  async deploy(version: string): Promise<number> {
    const image = `${this.stack.repository}:${version}`;
    const args = [
      RAW_DEPLOY,
      image,
      RAW_CONTAINER,
      String(this.port),
      String(CONTAINER_PORT),
      HEALTH_PATH,
      String(STOP_GRACE_SECONDS),
      String(HEALTH_POLL_SECONDS),
      String(HEALTHY_WITHIN_SECONDS),
    ];
    const { ms } = await timed(() => runScript('bash', args, { DOCKER_HOST: this.stack.docker.engine.dockerHost }));
    return ms;
  }
}

/** A host port for the raw container that no agent service is published on. */
async function freeRawPort(stack: BenchDockerStack): Promise<number> {
  const taken = new Set(Object.values(stack.ports));
  for (;;) {
    const port = await freePort();
    if (!taken.has(port)) return port;
  }
}

function runScript(command: string, args: string[], env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), CLI_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
    });
  });
}

export function comparison(operation: string, agent: number[], raw: number[], goal: number, notes: string): BenchRow {
  const ratio = median(agent) / median(raw);
  return {
    operation,
    agent: formatMs(median(agent)),
    raw: formatMs(median(raw)),
    ratio,
    goal: `≤ ${goal}x`,
    met: ratio <= goal,
    notes,
  };
}

/**
 * One deploy taken apart: the CLI process loading (`deploy-agent --help`, the same process doing no work), the rest of
 * the way from its spawn to the workflow's start (connect, spec, start call), each phase the workflow recorded (phases
 * inside another are shown in brackets after it), the time outside phases (workflow tasks, pruning), and from the
 * workflow's end to the CLI's exit (result, report, process exit).
 */
async function whereTheTimeGoes(stack: BenchDockerStack, deploy: TimedCli): Promise<BenchRow> {
  const id = deploymentIdIn(deploy.result.stdout);
  const answer = await runCli(['status', id, '--json'], stack.cliEnv);
  const status = JSON.parse(answer.stdout) as DeploymentStatus;
  const loads: number[] = [];
  for (let i = 0; i < 3; i++) loads.push((await timed(() => runCli(['--help'], stack.cliEnv))).ms);
  const cliLoad = median(loads);
  const started = Date.parse(status.startedAt);
  const finished = Date.parse(status.finishedAt ?? status.startedAt);
  const parts: string[] = [
    `CLI process load ${formatMs(cliLoad)}`,
    `then to workflow start ${formatMs(started - deploy.spawnedAt - cliLoad)}`,
  ];
  let inPhases = 0;
  for (const phase of topLevelPhases(status.phases)) {
    inPhases += phase.ms;
    const inner = phase.inner.map((p) => `${p.name} ${formatMs(p.ms)}`).join(', ');
    parts.push(`${phase.name} ${formatMs(phase.ms)}${inner ? ` [${inner}]` : ''}`);
  }
  parts.push(`outside phases ${formatMs(finished - started - inPhases)}`);
  parts.push(`workflow end→CLI exit ${formatMs(deploy.spawnedAt + deploy.ms - finished)}`);
  return { operation: 'one deploy (Docker), taken apart', agent: formatMs(deploy.ms), notes: parts.join('; ') };
}

interface TimedPhase {
  name: string;
  start: number;
  end: number;
  ms: number;
  inner: TimedPhase[];
}

/** The recorded phases that ran, each with the ones that ran inside it. */
function topLevelPhases(phases: DeploymentStatus['phases']): TimedPhase[] {
  const top: TimedPhase[] = [];
  for (const phase of phases) {
    if (phase.status === 'skipped') continue;
    const start = Date.parse(phase.startedAt);
    const end = Date.parse(phase.endedAt ?? phase.startedAt);
    const timedPhase = { name: phase.name, start, end, ms: end - start, inner: [] };
    const outer = top.at(-1);
    if (outer && start >= outer.start && end <= outer.end) outer.inner.push(timedPhase);
    else top.push(timedPhase);
  }
  return top;
}
