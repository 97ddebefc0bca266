import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DeploymentStatus } from '../../domain/deployment.js';
import { sleep } from '../../stack/processes.js';
import { testKeysEnv } from './keys.js';

const CLI = fileURLToPath(new URL('../../client/cli.js', import.meta.url));

let configHome: string | undefined;
function emptyConfigHome(): string {
  if (!configHome) {
    configHome = mkdtempSync(join(tmpdir(), 'deploy-agent-config-'));
    const dir = configHome;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return configHome;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI in its own process, exactly as CI would, bounded in time. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<CliResult> {
  return runProgram(CLI, args, env, timeoutMs, `deploy-agent ${args.join(' ')}`);
}

const WORKER = fileURLToPath(new URL('../../worker/main.js', import.meta.url));

/** The worker process as a container runs it (`node dist/worker/main.js`), with only the environment given. */
export function runWorkerProcess(env: Record<string, string>, timeoutMs = 60_000): Promise<CliResult> {
  return runProgram(WORKER, [], env, timeoutMs, 'the worker');
}

/** One of the project's programs in its own Node process, until it exits or `timeoutMs` runs out. */
function runProgram(
  program: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs: number,
  what: string,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [program, ...args], {
      // A clean environment, as CI gives it: only what the test says, so nothing of the caller's leaks in.
      // A login cached on this machine must not stand in for the identity a test gives: its own config home.
      // The test process's payload keys, unless the test says otherwise (DEPLOY_AGENT_KEYS: '' for none).
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        XDG_CONFIG_HOME: emptyConfigHome(),
        ...testKeysEnv(),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export function deploymentIdIn(output: string): string {
  const id = /deployment (\S+\.\S+\.[0-9a-f-]{36})/.exec(output)?.[1];
  if (!id) throw new Error(`no deployment id in:\n${output}`);
  return id;
}

/** Polls `deploy-agent status --json` (bounded) until `done` holds, and answers that status. */
export async function waitForStatus(
  id: string,
  env: Record<string, string>,
  done: (status: DeploymentStatus) => boolean,
): Promise<DeploymentStatus> {
  let last = '';
  for (let attempt = 0; attempt < 300; attempt++) {
    const result = await runCli(['status', id, '--json'], env);
    last = result.stdout + result.stderr;
    try {
      const status = JSON.parse(result.stdout) as DeploymentStatus;
      if (done(status)) return status;
    } catch {
      // not an answer yet (no worker polling so far)
    }
    await sleep(300);
  }
  throw new Error(`${id}: the awaited state never came; last status ${last}`);
}
