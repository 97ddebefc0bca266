import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDependencies } from '../activities/index.js';
import { dataConverter } from '../codec/data-converter.js';
import { TASK_QUEUE } from '../domain/deployment.js';
import { type KeyRing, keyRingFromEnv } from '../keys/key-ring.js';
import { prebuiltWorkflowBundle, workflowsPath } from './bundle.js';

export { workflowsPath } from './bundle.js';

/**
 * Heartbeats are how a running activity learns it was cancelled: sent at most this often (by default every 24 s for a
 * 30 s heartbeat timeout), a budget's cancellation would reach a change only that much later, while the runbook
 * waits for it to stop. Every worker, tests' included, runs with these.
 */
export const WORKER_TUNING = {
  maxHeartbeatThrottleInterval: '1s',
  defaultHeartbeatThrottleInterval: '1s',
} satisfies Partial<WorkerOptions>;

export interface WorkerSettings extends ActivityDependencies {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** A workflow bundle of the caller's own (tests share one); by default the one `npm run build` wrote. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** The keys payloads are encrypted with; by default the ones DEPLOY_AGENT_KEYS_FILE or DEPLOY_AGENT_KEYS name. */
  keyRing?: KeyRing;
}

export async function createWorker({
  connection,
  namespace,
  taskQueue,
  workflowBundle,
  keyRing,
  ...dependencies
}: WorkerSettings): Promise<Worker> {
  // Every worker encrypts: without keys there is no worker (InvalidInput names the variables to set).
  const converter = dataConverter(keyRing ?? keyRingFromEnv());
  const bundle = workflowBundle ?? (await prebuiltWorkflowBundle());
  return Worker.create({
    connection,
    namespace,
    taskQueue: taskQueue ?? TASK_QUEUE,
    ...WORKER_TUNING,
    dataConverter: converter,
    ...(bundle ? { workflowBundle: bundle } : { workflowsPath }),
    activities: createActivities(dependencies),
  });
}

export function reportsDirFromEnv(): string {
  return process.env.DEPLOY_AGENT_REPORTS_DIR ?? 'deploy-reports';
}

/** The platform policy the worker judges by: `--policy FILE` or DEPLOY_AGENT_POLICY. */
export function policyFileFromEnv(): string | undefined {
  return process.env.DEPLOY_AGENT_POLICY;
}
