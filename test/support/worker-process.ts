/**
 * Worker processes as a deployment runs them (`node dist/worker/main.js`), started by a test and SIGKILLed by it as a
 * crash or an OOM kill would end them, with what tests ask about them: who they are on the task queue, which
 * deployment they worked for, and whether one release per service runs once they are done.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import type { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { LABEL } from '../../activities/docker/engine.js';
import { parseDeploymentId, TASK_QUEUE } from '../../domain/deployment.js';
import { registerExitCleanup, sleep } from '../../stack/processes.js';

const WORKER = fileURLToPath(new URL('../../worker/main.js', import.meta.url));
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

export interface WorkerProcessOptions {
  /** What reaches Temporal (startTestTemporal's env), on top of this process's environment. */
  env: Record<string, string>;
  policyFile: string;
  reportsDir: string;
  /** stdout and stderr, appended. */
  logFile: string;
}

export interface WorkerProcess {
  readonly pid: number;
  /** What the worker calls itself on the task queue and in the histories it writes: the SDK's pid@host. */
  readonly identity: string;
  /** SIGKILL, then waits for the exit; does nothing to a worker that already exited. */
  kill(): Promise<void>;
}

export function startWorkerProcess(options: WorkerProcessOptions): WorkerProcess {
  const log = openSync(options.logFile, 'a');
  const child = spawn(process.execPath, [WORKER], {
    env: {
      ...process.env,
      ...options.env,
      DEPLOY_AGENT_REPORTS_DIR: options.reportsDir,
      DEPLOY_AGENT_POLICY: options.policyFile,
    },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`the worker did not start; see ${options.logFile}`);
  // A test process that dies before its after hook must not leave a worker polling.
  const unregister = registerExitCleanup(() => child.kill('SIGKILL'));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(unregister);
  return {
    pid,
    identity: `${pid}@${hostname()}`,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** The identities polling the deploy task queue for `type` (workflow or activity tasks). */
async function pollers(connection: Connection, type: proto.temporal.api.enums.v1.TaskQueueType): Promise<string[]> {
  const answer = await connection.workflowService.describeTaskQueue({
    namespace: 'default',
    taskQueue: { name: TASK_QUEUE, kind: proto.temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: type,
  });
  return (answer.pollers ?? []).map((poller) => poller.identity ?? '');
}

/** Waits (a bounded number of polls) until every worker polls for both workflow and activity tasks. */
export async function untilPolling(connection: Connection, workers: WorkerProcess[]): Promise<void> {
  const { TASK_QUEUE_TYPE_WORKFLOW, TASK_QUEUE_TYPE_ACTIVITY } = proto.temporal.api.enums.v1.TaskQueueType;
  let seen: string[] = [];
  for (let poll = 0; poll < 300; poll++) {
    const [workflow, activity] = await Promise.all([
      pollers(connection, TASK_QUEUE_TYPE_WORKFLOW),
      pollers(connection, TASK_QUEUE_TYPE_ACTIVITY),
    ]);
    seen = [...workflow, ...activity];
    if (workers.every((w) => workflow.includes(w.identity) && activity.includes(w.identity))) return;
    await sleep(100);
  }
  throw new Error(`workers ${workers.map((w) => w.identity).join(', ')} never all polled; pollers: ${seen.join(', ')}`);
}

export const deploymentHandle = (client: Client, deploymentId: string) => {
  const { workflowId, runId } = parseDeploymentId(deploymentId);
  return client.workflow.getHandle(workflowId, runId);
};

/** An activity ended: the boundaries a worker is killed at. */
export const activityEnded = (event: HistoryEvent): boolean =>
  Boolean(
    event.activityTaskCompletedEventAttributes ??
    event.activityTaskFailedEventAttributes ??
    event.activityTaskTimedOutEventAttributes ??
    event.activityTaskCanceledEventAttributes,
  );

export interface ServiceRelease {
  service: string;
  environment: string;
  version: string;
  hostPort: number;
}

/**
 * What every ending must keep: of the service's containers in the environment exactly one runs, under the live name,
 * the release of `version`, serving it on its host port; and no deployment has two containers.
 */
export async function assertOneRelease(engine: Docker, release: ServiceRelease, what: string): Promise<void> {
  const { service, environment, version, hostPort } = release;
  const containers = await engine.listContainers({
    all: true,
    filters: { label: [`${LABEL.service}=${service}`, `${LABEL.environment}=${environment}`] },
  });
  const running = containers.filter((c) => c.State === 'running');
  assert.deepEqual(
    running.map((c) => [c.Names.join(','), c.Labels[LABEL.version]]),
    [[`/${service}_${environment}`, version]],
    `${what}: the one release of ${service} that runs`,
  );
  const ids = containers.map((c) => c.Labels[LABEL.deploymentId]);
  assert.equal(
    new Set(ids).size,
    ids.length,
    `${what}: a deployment of ${service} has two containers: ${ids.join(', ')}`,
  );
  assert.equal(await (await fetch(`http://127.0.0.1:${hostPort}/version`)).text(), `${version}\n`, what);
}
