/** The agent's and the raw tools' sides of the target suites: timed processes, compared rows, one deploy taken apart. */
import { spawn } from 'node:child_process';
import type { DeploymentStatus } from '../domain/deployment.js';
import { deploymentIdIn, runCli, type CliResult } from '../test/support/cli.js';
import { BENCH_ENVIRONMENT, BENCH_VERSIONS } from './docker-stack.js';
import { type BenchRow, formatMs, median, timed } from './measure.js';

export const CLI_TIMEOUT_MS = 180_000;

export interface TimedCli {
  ms: number;
  /** Date.now() just before the CLI process was spawned: compared with the workflow's own times. */
  spawnedAt: number;
  result: CliResult;
}

/** The agent's side: the real CLI process, as CI runs it, timed from spawn to exit; anything but exit 0 throws. */
export class AgentRuns {
  constructor(
    private readonly cliEnv: Record<string, string>,
    private readonly specFile: string,
    private readonly service: string,
  ) {}

  deploy(version: string): Promise<TimedCli> {
    return this.cli(['deploy', '-f', this.specFile, '--env', BENCH_ENVIRONMENT, '--version', version, '--wait']);
  }

  rollback(): Promise<TimedCli> {
    return this.cli(['rollback', '-f', this.specFile, '--service', this.service, '--env', BENCH_ENVIRONMENT, '--wait']);
  }

  private async cli(args: string[]): Promise<TimedCli> {
    const spawnedAt = Date.now();
    const { ms, value: result } = await timed(() => runCli(args, this.cliEnv, CLI_TIMEOUT_MS));
    if (result.code !== 0)
      throw new Error(`deploy-agent ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    return { ms, spawnedAt, result };
  }
}

/** A command of the raw side, to its exit; anything but exit 0 throws. */
export function runCommand(command: string, args: string[], env: Record<string, string>): Promise<void> {
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

/** The raw tool's side of a target suite, each call timed as a whole. */
export interface RawSide {
  deploy(version: string): Promise<number>;
  /** Back to `previous`, the version deployed before the current one. */
  rollback(previous: string): Promise<number>;
}

export interface TargetSuite {
  /** Shown in the rows, e.g. "Docker". */
  target: string;
  agent: AgentRuns;
  raw: RawSide;
  cliEnv: Record<string, string>;
  runs: number;
  notes: { deploy: string; rollback: string };
}

/**
 * Deploy and rollback, the agent beside the raw tool, `runs` times each, then one deploy taken apart. Each side starts
 * from a running release, so that every timed deploy replaces one; a rollback undoes the deploy before it, so each
 * run first deploys the other version (not timed).
 */
export async function deployAndRollbackRows({
  target,
  agent,
  raw,
  cliEnv,
  runs,
  notes,
}: TargetSuite): Promise<BenchRow[]> {
  const versions = (i: number) => BENCH_VERSIONS[i % 2]!;
  await agent.deploy(versions(0));
  await raw.deploy(versions(0));
  const agentDeploys: number[] = [];
  const rawDeploys: number[] = [];
  let lastDeploy: TimedCli | undefined;
  for (let i = 1; i <= runs; i++) {
    lastDeploy = await agent.deploy(versions(i));
    agentDeploys.push(lastDeploy.ms);
    rawDeploys.push(await raw.deploy(versions(i)));
  }
  const live = versions(runs);
  const other = versions(runs + 1);
  const agentRollbacks: number[] = [];
  const rawRollbacks: number[] = [];
  for (let i = 0; i < runs; i++) {
    await agent.deploy(other);
    agentRollbacks.push((await agent.rollback()).ms);
    await raw.deploy(other);
    rawRollbacks.push(await raw.rollback(live));
  }
  const breakdown = lastDeploy
    ? await whereTheTimeGoes(`one deploy (${target}), taken apart`, cliEnv, lastDeploy)
    : undefined;
  return [
    comparison(`deploy (${target})`, agentDeploys, rawDeploys, 1.3, notes.deploy),
    comparison(`rollback (${target})`, agentRollbacks, rawRollbacks, 1.5, notes.rollback),
    ...(breakdown ? [breakdown] : []),
  ];
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
export async function whereTheTimeGoes(
  operation: string,
  cliEnv: Record<string, string>,
  deploy: TimedCli,
): Promise<BenchRow> {
  const id = deploymentIdIn(deploy.result.stdout);
  const answer = await runCli(['status', id, '--json'], cliEnv);
  const status = JSON.parse(answer.stdout) as DeploymentStatus;
  const loads: number[] = [];
  for (let i = 0; i < 3; i++) loads.push((await timed(() => runCli(['--help'], cliEnv))).ms);
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
  return { operation, agent: formatMs(deploy.ms), notes: parts.join('; ') };
}

export interface TimedPhase {
  name: string;
  start: number;
  end: number;
  ms: number;
  inner: TimedPhase[];
}

/** The recorded phases that ran, each with the ones that ran inside it. */
export function topLevelPhases(phases: DeploymentStatus['phases']): TimedPhase[] {
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
