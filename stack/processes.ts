// Long-running helper processes for tests and demos: each runs in its own process group so that stopping it also
// stops whatever it forked, with its output in a log file that failures quote.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export interface StartOptions {
  /** Shown in messages, e.g. "dockerd". */
  name: string;
  command: string;
  args: string[];
  /** stdout and stderr of the process, appended. */
  logFile: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ReadyOptions {
  /** Resolves true once the process serves; a throw counts as "not yet". */
  probe: () => Promise<boolean>;
  /** Total time allowed, default 30 s. */
  timeoutMs?: number;
  /** Pause between probes, default 100 ms. */
  intervalMs?: number;
  /** Time allowed for one probe, default 2 s; a hung probe must not eat the whole budget. */
  probeTimeoutMs?: number;
}

export interface StopOptions {
  /** Time between SIGTERM and SIGKILL, default 10 s. */
  graceMs?: number;
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Exit code or signal once the process has ended, else undefined. */
  readonly exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves when the process has ended (also when it was stopped). */
  readonly done: Promise<void>;
  /** SIGTERM to the whole group, SIGKILL after the grace period. Safe to call twice and after an exit. */
  stop(options?: StopOptions): Promise<void>;
  /** The last lines of the log, for error messages. */
  logTail(lines?: number): string;
}

// Processes still running when this Node process exits; a failing caller must not leave servers behind.
const running = new Set<ManagedProcess>();
const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Runs cleanup (synchronous work only) if this Node process exits or dies of a signal before the returned
 * function is called. For things a process group kill cannot reach, e.g. daemons that move to their own session.
 */
export function registerExitCleanup(cleanup: () => void): () => void {
  installExitHook();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Only synchronous work is possible here: the last resort is an immediate SIGKILL of each group.
  process.on('exit', killAll);
  // Detached groups do not get the terminal's Ctrl-C. When nobody else handles the signal, Node would die
  // without an 'exit' event, so kill the groups and die of the same signal.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      if (process.listenerCount(signal) > 1) return;
      killAll();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function killAll(): void {
  for (const child of running) killGroup(child.pid, 'SIGKILL');
  running.clear();
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // Best effort while exiting: the other cleanups still run.
    }
  }
  exitCleanups.clear();
}

function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

export function readTail(file: string, lines = 40): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a process detached in its own group, output appended to logFile. Does not wait for it to be ready. */
export async function startProcess(options: StartOptions): Promise<ManagedProcess> {
  await mkdir(path.dirname(options.logFile), { recursive: true });
  const fd = openSync(options.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (error) => resolve(error));
  });
  if (spawned || child.pid === undefined)
    throw new Error(`${options.name}: cannot start ${options.command}: ${spawned?.message ?? 'no pid'}`);
  // Later 'error' events (a failed signal) must not crash the caller; stop() checks the outcome itself.
  child.on('error', () => undefined);
  // The group must not keep this Node process alive on its own.
  child.unref();
  const pid = child.pid;

  let exited: ManagedProcess['exited'];
  const done = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      running.delete(managed);
      resolve();
    });
  });

  let stopping: Promise<void> | undefined;
  const managed: ManagedProcess = {
    name: options.name,
    pid,
    logFile: options.logFile,
    get exited() {
      return exited;
    },
    done,
    logTail: (lines?: number) => readTail(options.logFile, lines),
    stop(stopOptions: StopOptions = {}) {
      stopping ??= (async () => {
        const graceMs = stopOptions.graceMs ?? 10_000;
        // Children of the leader may outlive it; the group is signalled even when the leader is gone.
        killGroup(pid, 'SIGTERM');
        const timer = delay(graceMs);
        const ended = await Promise.race([done.then(() => true), timer.promise.then(() => false)]);
        timer.cancel();
        killGroup(pid, 'SIGKILL');
        if (!ended) await Promise.race([done, sleep(2_000)]);
        running.delete(managed);
      })();
      return stopping;
    },
  };
  running.add(managed);
  installExitHook();
  return managed;
}

/**
 * Polls probe until it passes. Throws, quoting the log, when the process exits first or time runs out; the
 * process is left running in that case so the caller decides (usually: stop it).
 */
export async function waitUntilReady(child: ManagedProcess, options: ReadyOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 100;
  const probeTimeoutMs = options.probeTimeoutMs ?? 2_000;
  const started = Date.now();
  const maxAttempts = Math.ceil(timeoutMs / intervalMs) + 1;
  let lastError = '';
  for (let attempt = 0; attempt < maxAttempts && Date.now() - started < timeoutMs; attempt++) {
    if (child.exited) break;
    const timer = delay(probeTimeoutMs);
    try {
      const ok = await Promise.race([options.probe(), timer.promise.then(() => false)]);
      if (ok) return;
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    } finally {
      timer.cancel();
    }
    await Promise.race([sleep(intervalMs), child.done]);
  }
  const why = child.exited
    ? `exited early (code ${child.exited.code}, signal ${child.exited.signal})`
    : `not ready within ${timeoutMs} ms${lastError ? ` (last probe error: ${lastError})` : ''}`;
  throw new Error(`${child.name} ${why}; log ${child.logFile}:\n${child.logTail()}`);
}

/** startProcess + waitUntilReady; stops the process again when it does not become ready. */
export async function startAndWait(
  options: StartOptions & { ready: ReadyOptions; stop?: StopOptions },
): Promise<ManagedProcess> {
  const child = await startProcess(options);
  try {
    await waitUntilReady(child, options.ready);
    return child;
  } catch (error) {
    await child.stop(options.stop);
    throw error;
  }
}

// Ports this process handed out: the system may offer a port again as soon as the probing socket closes.
const portsGiven = new Set<number>();
/** Below the kernel's range for outgoing connections, whose source ports would otherwise take ours. */
const LISTEN_PORTS = { first: 20_000, count: 12_000 };

/**
 * A TCP port that was free on 127.0.0.1 a moment ago and that this process has not handed out before. It lies
 * outside the range the kernel picks outgoing connections' source ports from (32768-60999 by default), so no
 * connection opened meanwhile can take it; another process may still bind it: bind soon.
 */
export async function freePort(): Promise<number> {
  const range = listenPortRange();
  for (let attempt = 0; attempt < 1_000; attempt++) {
    const port = range.first + Math.floor(Math.random() * range.count);
    if (portsGiven.has(port) || !(await canListen(port))) continue;
    portsGiven.add(port);
    return port;
  }
  throw new Error(`no free port in ${range.first}-${range.first + range.count - 1} after 1,000 tries`);
}

function listenPortRange(): { first: number; count: number } {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && low > 2_000)
      return { first: Math.max(1_024, low - LISTEN_PORTS.count), count: Math.min(LISTEN_PORTS.count, low - 1_024) };
  } catch {
    // Not Linux: the default range.
  }
  return LISTEN_PORTS;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** True when something accepts TCP connections on host:port. */
export function tcpAnswers(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}
