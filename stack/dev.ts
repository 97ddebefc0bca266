/** `deploy-agent dev`: a local Temporal dev server and a worker, for development, the demo and the end-to-end tests. */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { printLine } from '../client/output.js';
import { type KeyRing, keyRingFromEnv, loadKeyRingFile, writeNewKeyRing } from '../keys/key-ring.js';
import { allSearchAttributes } from '../workflows/messages.js';
import { createWorker, policyFileFromEnv, reportsDirFromEnv } from '../worker/index.js';
import { untilInterrupted } from '../worker/main.js';
import { devPolicy, writePolicy } from './policy.js';
import { startAndWait } from './processes.js';
import { temporalCliPath } from './temporal.js';

/** A cold dev server on a loaded 2-core machine has been seen to need more than the SDK's fixed 5 s to serve. */
const DEV_SERVER_START_MS = 60_000;
const DEV_SERVER_STOP_GRACE_MS = 10_000;

export interface DevStack {
  address: string;
  uiUrl: string;
  namespace: string;
  stop(): Promise<void>;
}

/** A local Temporal dev server with the deploy search attributes registered, and a worker polling it. */
export interface DevStackOptions {
  port: number;
  uiPort: number;
  db?: string;
  reportsDir: string;
  /** The platform policy the worker judges by. */
  policyFile: string;
  /** The worker's log level; the demo keeps activity failures out of its own narrative. */
  logLevel?: 'WARN' | 'ERROR';
  /** False: the server only, for tests that run (and kill) workers as processes of their own. */
  worker?: boolean;
  /** The worker's payload keys; by default DEPLOY_AGENT_KEYS_FILE or DEPLOY_AGENT_KEYS. */
  keyRing?: KeyRing;
  /** The server's own log; by default beside the reports directory. */
  serverLog?: string;
}

export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  Runtime.install({ logger: new DefaultLogger(options.logLevel ?? 'WARN') });
  const namespace = 'default';
  const address = `127.0.0.1:${options.port}`;
  const server = await startAndWait({
    name: 'temporal server start-dev',
    command: temporalCliPath(),
    args: [
      'server',
      'start-dev',
      ...['--ip', '127.0.0.1', '--port', String(options.port), '--ui-port', String(options.uiPort)],
      ...['--namespace', namespace, '--log-format', 'pretty', '--log-level', 'error'],
      ...(options.db ? ['--db-filename', options.db] : []),
      ...allSearchAttributes.flatMap((key) => ['--search-attribute', `${key.name}=${key.type}`]),
    ],
    logFile: options.serverLog ?? join(dirname(resolve(options.reportsDir)), 'temporal-dev-server.log'),
    ready: { probe: () => servesNamespace(address, namespace), timeoutMs: DEV_SERVER_START_MS, intervalMs: 200 },
    stop: { graceMs: DEV_SERVER_STOP_GRACE_MS },
  });
  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect({ address });
  } catch (error) {
    await server.stop();
    throw error;
  }
  const worker =
    options.worker === false
      ? undefined
      : await createWorker({
          connection,
          namespace,
          reportsDir: options.reportsDir,
          policyFile: options.policyFile,
          keyRing: options.keyRing ?? keyRingFromEnv(),
        });
  const running = worker?.run();
  return {
    address,
    uiUrl: `http://127.0.0.1:${options.uiPort}`,
    namespace,
    async stop() {
      if (worker?.getState() === 'RUNNING') worker.shutdown();
      await running;
      await connection.close();
      await server.stop({ graceMs: DEV_SERVER_STOP_GRACE_MS });
    },
  };
}

async function servesNamespace(address: string, namespace: string): Promise<boolean> {
  const connection = await Connection.connect({ address, connectTimeout: 1_000 });
  try {
    await connection.workflowService.describeNamespace({ namespace });
    return true;
  } finally {
    await connection.close();
  }
}

export async function devCommand(options: { port: string; uiPort: string; db?: string }): Promise<number> {
  let policyFile = policyFileFromEnv();
  if (!policyFile) {
    // Written once: the user adds their services' ports, secrets and rule settings there, and a restart keeps them.
    policyFile = resolve('.deploy-agent', 'dev-policy.yaml');
    const kept = existsSync(policyFile);
    if (!kept) await writePolicy(policyFile, devPolicy(process.cwd()));
    printLine(
      `Platform policy: ${policyFile} (${kept ? 'kept from an earlier start' : 'insecure dev mode'}; ` +
        "add your services' ports there, or set DEPLOY_AGENT_POLICY)",
    );
  }
  const keyRing = devKeyRing();
  const stack = await startDevStack({
    keyRing,
    port: Number(options.port),
    uiPort: Number(options.uiPort),
    db: options.db,
    reportsDir: reportsDirFromEnv(),
    policyFile,
    serverLog: resolve('.deploy-agent', 'temporal-dev-server.log'),
  });
  printLine(`Temporal dev server: ${stack.address} (namespace ${stack.namespace})`);
  printLine(`Temporal Web UI:     ${stack.uiUrl}`);
  printLine('Worker running. Ctrl-C stops both.');
  await untilInterrupted();
  await stack.stop();
  return 0;
}

/**
 * The keys configured (DEPLOY_AGENT_KEYS_FILE or DEPLOY_AGENT_KEYS), else the dev state directory's own key file,
 * written once (owner-only) and kept: payloads already in the dev server's database stay readable across restarts.
 * The CLI in another shell needs the same keys: the path is printed for it.
 */
function devKeyRing(): KeyRing {
  if (process.env.DEPLOY_AGENT_KEYS_FILE || process.env.DEPLOY_AGENT_KEYS) return keyRingFromEnv();
  const stateDir = resolve('.deploy-agent');
  const file = resolve(stateDir, 'dev-keys.json');
  if (!existsSync(file)) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeNewKeyRing(file);
  }
  process.env.DEPLOY_AGENT_KEYS_FILE = file;
  printLine(`Payload keys: ${file} (owner-only; for the CLI: export DEPLOY_AGENT_KEYS_FILE=${file})`);
  return loadKeyRingFile(file);
}
