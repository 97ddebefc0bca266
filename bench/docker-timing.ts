/** The agent's and the raw tools' sides of the target suites: timed processes, compared rows, one deploy taken apart. */
import { spawn } from 'node:child_process';
import type { DeploymentStatus } from '../domain/deployment.js';
import { deploymentIdIn, runCli, type CliResult } from '../test/support/cli.js';
import { BENCH_ENVIRONMENT } from './docker-stack.js';
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
