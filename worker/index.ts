import { fileURLToPath } from 'node:url';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDependencies } from '../activities/index.js';
import { TASK_QUEUE } from '../domain/deployment.js';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.js', import.meta.url));

export interface WorkerSettings extends ActivityDependencies {
  connection: NativeConnection;
  namespace: string;
  taskQueue?: string;
  /** A prebuilt workflow bundle; bundling on every start costs seconds. */
  workflowBundle?: WorkerOptions['workflowBundle'];
}

export async function createWorker({
  connection,
  namespace,
  taskQueue,
  workflowBundle,
  ...dependencies
}: WorkerSettings): Promise<Worker> {
  return Worker.create({
    connection,
    namespace,
    taskQueue: taskQueue ?? TASK_QUEUE,
    ...(workflowBundle ? { workflowBundle } : { workflowsPath }),
    activities: createActivities(dependencies),
  });
}

export function reportsDirFromEnv(): string {
  return process.env.DEPLOY_AGENT_REPORTS_DIR ?? 'deploy-reports';
}
