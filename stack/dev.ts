/** `deploy-agent dev`: a local Temporal dev server and a worker, for development, the demo and the end-to-end tests. */
import { existsSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { printLine } from '../client/output.js';
import { type KeyRing, keyRingFromEnv, loadKeyRingFile, writeNewKeyRing } from '../keys/key-ring.js';
import { allSearchAttributes } from '../workflows/messages.js';
import { createWorker, policyFileFromEnv, reportsDirFromEnv } from '../worker/index.js';
import { untilInterrupted } from '../worker/main.js';
import { devPolicy, writePolicy } from './policy.js';
import { temporalCliPath } from './temporal.js';

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
}

export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  Runtime.install({ logger: new DefaultLogger(options.logLevel ?? 'WARN') });
  const environment = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalCliPath() },
      ip: '127.0.0.1',
      port: options.port,
      ui: true,
      uiPort: options.uiPort,
      dbFilename: options.db,
      searchAttributes: allSearchAttributes,
      log: { format: 'pretty', level: 'error' },
    },
  });
  const namespace = environment.namespace ?? 'default';
  const worker =
    options.worker === false
      ? undefined
      : await createWorker({
          connection: environment.nativeConnection,
          namespace,
          reportsDir: options.reportsDir,
          policyFile: options.policyFile,
          keyRing: options.keyRing ?? keyRingFromEnv(),
        });
  const running = worker?.run();
  return {
    address: `127.0.0.1:${options.port}`,
    uiUrl: `http://127.0.0.1:${options.uiPort}`,
    namespace,
    async stop() {
      if (worker?.getState() === 'RUNNING') worker.shutdown();
      await running;
      await environment.teardown();
    },
  };
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
