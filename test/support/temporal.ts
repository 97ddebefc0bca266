import { Client, type Connection } from '@temporalio/client';
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
