import type { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { allSearchAttributes } from '../../workflows/messages.js';
import { workflowsPath } from '../../worker/bundle.js';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Bundling the workflows costs seconds; every worker of a test run shares one bundle. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({
    workflowsPath,
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
