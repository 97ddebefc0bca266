import { Client, type Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { DataConverter } from '@temporalio/common';
import proto from '@temporalio/proto';
import {
  bundleWorkflowCode,
  type NativeConnection,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import { WORKER_TUNING } from '../../worker/index.js';
import { allSearchAttributes } from '../../workflows/messages.js';
import { workflowsPath } from '../../worker/bundle.js';
import { dataConverter, payloadConverterPath } from '../../codec/data-converter.js';
import { keyRingFromEnv } from '../../keys/key-ring.js';
import { timeSkippingServerPath } from '../../stack/temporal.js';
import { testKeysEnv } from './keys.js';

/** The product's data converter with the test process's key ring: what every test worker and client uses. */
export function testDataConverter(): DataConverter {
  testKeysEnv();
  return dataConverter(keyRingFromEnv());
}

/** A client that reads (and writes) payloads as the product's do: encrypted with the test process's keys. */
export function testClient(connection: Connection, namespace?: string): Client {
  return new Client({ connection, namespace, dataConverter: testDataConverter() });
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundling the workflows costs seconds; every worker of a test run shares one bundle. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({
    workflowsPath,
    payloadConverterPath,
    logger: { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {} },
  });
  return bundle;
}

/** The time-skipping server knows no custom search attributes until asked, unlike a dev server started with them. */
export async function registerSearchAttributes(connection: Connection, namespace = 'default'): Promise<void> {
  const keyword = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(allSearchAttributes.map((key) => [key.name, keyword])),
  });
}

export interface TimeSkippingServer {
  env: TestWorkflowEnvironment;
  /** A client that never unlocks time skipping: time passes as on a wall clock unless a test calls env.sleep. */
  client: Client;
}

/**
 * The time-skipping server with the deploy search attributes, and the workflows bundled.
 *
 * The SDK's own client (env.client) unlocks time skipping whenever a test waits for a result. The server may then
 * fire a phase's budget timer while the worker is completing the task that cancels it: it refuses that cancel and
 * the run never gets another task (a fault of the test server, not of the real one). So tests wait through
 * `client`, where time stays locked, and a test that needs hours to pass skips exactly that far with env.sleep.
 */
export async function startTimeSkippingServer(): Promise<TimeSkippingServer> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } },
    client: { dataConverter: testDataConverter() },
  });
  await registerSearchAttributes(env.connection);
  await workflowBundle();
  return { env, client: testClient(env.connection, env.namespace) };
}

export interface TestWorkerOptions {
  connection: NativeConnection;
  taskQueue: string;
  activities: Activities;
  /** Another build of the workflows (a race test's variant); the shared bundle by default. */
  bundle?: WorkflowBundleWithSourceMap;
  /** 0: a stopped worker holds no workflow back from the next one. */
  maxCachedWorkflows?: number;
}

/** A worker on the test's task queue, with the product's tuning, running until `work` settles. */
export async function runTestWorker<T>(options: TestWorkerOptions, work: () => Promise<T>): Promise<T> {
  const { bundle, ...rest } = options;
  const worker = await Worker.create({
    ...WORKER_TUNING,
    dataConverter: testDataConverter(),
    ...rest,
    workflowBundle: bundle ?? (await workflowBundle()),
  });
  return worker.runUntil(work());
}
