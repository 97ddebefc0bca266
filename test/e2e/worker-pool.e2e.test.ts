/**
 * Several workers on the one task queue: two worker processes share a batch of deploys of eight services started at
 * once, and one of them is SIGKILLed in the middle of it. Nothing is lost: every deploy ends succeeded, every service
 * runs exactly its new release, once, and the surviving worker finishes what the dead one had under way.
 *
 * The middle of the batch is a point the test waits for, not a moment it guesses: the download of the new release's
 * layer is held at a registry proxy, so every deploy stops inside its apply. The kill comes once each deploy has its
 * apply running and the histories show activities of the batch run by both workers; the one killed is the worker
 * running the most of those applies. They time out (no heartbeat) and are retried on the other worker.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { type Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort, sleep } from '../../stack/processes.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import { layersOnlyIn, startHoldingProxy, type HoldingProxy } from '../support/holding-proxy.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../support/spec-fixtures.js';
import { testClient } from '../support/temporal.js';
import {
  assertOneRelease,
  deploymentHandle,
  startWorkerProcess,
  untilPolling,
  type WorkerProcess,
} from '../support/worker-process.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

const SERVICES = Array.from({ length: 8 }, (_, i) => `shop-${i + 1}`);
const ENVIRONMENT = 'staging';
/** One image for every service: each deploys it under its own name, to its own host port. */
const REPOSITORY = 'web-pool';
const APPLY = 'applyRelease';

/** Where the batch stands: the worker running each deploy's apply, and who ran each activity that ended so far. */
interface BatchPoint {
  applies: Map<string, string>;
  activitiesBy: Map<string, number>;
}

/**
 * The worker that did the work an event records: ran an activity (the started event is written once its last attempt
 * has ended) or completed a workflow task. A workflow task handed to a worker that was already dead is not work.
 */
const workDoneBy = (event: HistoryEvent): string | undefined =>
  event.activityTaskStartedEventAttributes?.identity ??
  event.workflowTaskCompletedEventAttributes?.identity ??
  undefined;

async function historyOf(client: Client, deploymentId: string): Promise<HistoryEvent[]> {
  return (await deploymentHandle(client, deploymentId).fetchHistory()).events ?? [];
}

/** The apply activity of a history: the worker that ran its last attempt, and which attempt that was. */
function applyIn(events: HistoryEvent[]): { identity?: string; attempt?: number } {
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === APPLY);
  const started = events.find(
    (e) => String(e.activityTaskStartedEventAttributes?.scheduledEventId) === String(scheduled?.eventId),
  )?.activityTaskStartedEventAttributes;
  return { identity: started?.identity ?? undefined, attempt: started?.attempt ?? undefined };
}

describe('two workers on one task queue, one SIGKILLed mid-batch', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let engine: Docker;
  let proxy: HoldingProxy;
  let temporal: DevStack;
  let connection: Connection;
  let client: Client;
  let env: Record<string, string>;
  let workers: WorkerProcess[] = [];
  const ports: Record<string, number> = {};
  const specFiles: Record<string, string> = {};

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-pool-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const built = `${docker.registry.address}/${REPOSITORY}`;
    for (const version of ['1.0.0', '1.1.0'])
      await buildServiceImage(docker, { repository: built, version, healthy: true });
    // The engine built 1.1.0 itself: without this, its pull would find every layer at hand and download nothing.
    await engine.getImage(`${built}:1.1.0`).remove();
    proxy = await startHoldingProxy(docker.registry.address);
    for (const service of SERVICES) {
      ports[service] = await freePort();
      specFiles[service] = join(workDir, `${service}.yaml`);
      await writeFile(specFiles[service], specYaml({ service, repository: `${proxy.address}/${REPOSITORY}` }));
    }
    const { policyFile } = await writeTestFiles(workDir, {
      policy: testPolicy([workDir], { [ENVIRONMENT]: dockerEnvironment(docker.engine.dockerHost, ports) }),
    });
    ({ temporal, env } = await startTestTemporal(workDir, policyFile, { worker: false }));
    connection = await Connection.connect({ address: temporal.address });
    client = testClient(connection);
    workers = [1, 2].map((n) =>
      startWorkerProcess({
        env,
        policyFile,
        reportsDir: join(workDir, 'reports'),
        logFile: join(workDir, `worker-${n}.log`),
      }),
    );
    // Both poll before the batch starts: the first to come up must not take all of it alone.
    await untilPolling(connection, workers);
  });

  after(async () => {
    proxy?.release();
    // The workers go first, so that nothing changes the engine while it is taken down.
    const first = await Promise.allSettled([...workers.map((w) => w.kill()), connection?.close(), temporal?.stop()]);
    const second = await Promise.allSettled([proxy?.close(), docker?.stop()]);
    await rm(workDir, { recursive: true, force: true });
    const failures = [...first, ...second].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) throw new AggregateError(failures, 'stopping the stack');
  });

  /** Starts a deploy of `version` of every service at once through the CLI, without --wait; answers their ids. */
  async function startBatch(version: string): Promise<string[]> {
    const started = await Promise.all(
      SERVICES.map((service) =>
        runCli(['deploy', '-f', specFiles[service] ?? '', '--env', ENVIRONMENT, '--version', version], env),
      ),
    );
    return started.map((result, i) => {
      assert.equal(result.code, 0, `deploy of ${SERVICES[i]} ${version}: ${result.stdout}${result.stderr}`);
      return deploymentIdIn(result.stdout);
    });
  }

  async function endsOf(ids: string[]): Promise<DeploymentStatus[]> {
    return Promise.all(ids.map((id) => deploymentHandle(client, id).result() as Promise<DeploymentStatus>));
  }

  function assertSucceeded(statuses: DeploymentStatus[], version: string): void {
    for (const status of statuses) {
      const what = `deploy of ${status.service} ${version}`;
      assert.equal(status.state, 'succeeded', `${what}: ${status.state}: ${status.errors.join('; ')}`);
      assert.equal(status.applied?.version, version, what);
    }
  }

  async function batchPoint(ids: string[]): Promise<BatchPoint> {
    const { PENDING_ACTIVITY_STATE_STARTED } = proto.temporal.api.enums.v1.PendingActivityState;
    const point: BatchPoint = { applies: new Map(), activitiesBy: new Map() };
    for (const id of ids) {
      const handle = deploymentHandle(client, id);
      const [description, events] = await Promise.all([handle.describe(), historyOf(client, id)]);
      const apply = description.raw.pendingActivities?.find(
        (a) => a.activityType?.name === APPLY && a.state === PENDING_ACTIVITY_STATE_STARTED,
      );
      if (apply?.lastWorkerIdentity) point.applies.set(id, apply.lastWorkerIdentity);
      for (const event of events) {
        const identity = event.activityTaskStartedEventAttributes?.identity;
        if (identity) point.activitiesBy.set(identity, (point.activitiesBy.get(identity) ?? 0) + 1);
      }
    }
    return point;
  }

  /** Polls (a bounded number of times) until every deploy is inside its held apply; answers where the batch stands. */
  async function untilEveryApplyIsHeld(ids: string[]): Promise<BatchPoint> {
    let point: BatchPoint = { applies: new Map(), activitiesBy: new Map() };
    for (let poll = 0; poll < 600; poll++) {
      point = await batchPoint(ids);
      if (point.applies.size === ids.length && proxy.held > 0) return point;
      await sleep(100);
    }
    throw new Error(`the batch never stood in its applies: ${point.applies.size} of ${ids.length} applying`);
  }

  const describeWorkers = (counts: Map<string, number>) =>
    workers.map((w) => `${w.identity}: ${counts.get(w.identity) ?? 0}`).join(', ');

  it('shares the batch between both workers, and loses nothing when one is SIGKILLed in the middle', async (t) => {
    assertSucceeded(await endsOf(await startBatch('1.0.0')), '1.0.0');

    proxy.hold(await layersOnlyIn(docker.registry.address, REPOSITORY, '1.1.0', '1.0.0'));
    const ids = await startBatch('1.1.0');
    const point = await untilEveryApplyIsHeld(ids);
    const appliesBy = new Map<string, number>();
    for (const identity of point.applies.values()) appliesBy.set(identity, (appliesBy.get(identity) ?? 0) + 1);
    t.diagnostic(`before the kill, activities ended per worker: ${describeWorkers(point.activitiesBy)}`);
    t.diagnostic(`before the kill, applies running per worker: ${describeWorkers(appliesBy)}`);
    for (const worker of workers)
      assert.ok(
        (point.activitiesBy.get(worker.identity) ?? 0) > 0,
        `both workers ran activities of the batch before the kill: ${describeWorkers(point.activitiesBy)}`,
      );

    const [victim, survivor] = [...workers].sort(
      (a, b) => (appliesBy.get(b.identity) ?? 0) - (appliesBy.get(a.identity) ?? 0),
    ) as [WorkerProcess, WorkerProcess];
    const lost = ids.filter((id) => point.applies.get(id) === victim.identity);
    assert.ok(lost.length > 0, 'the worker killed has applies under way');
    await victim.kill();
    proxy.release();
    // Whatever a history records from here on, the dead worker can have done none of it.
    const killedAt = new Map(
      await Promise.all(ids.map(async (id) => [id, (await historyOf(client, id)).length] as const)),
    );

    assertSucceeded(await endsOf(ids), '1.1.0');
    for (const service of SERVICES)
      await assertOneRelease(
        engine,
        { service, environment: ENVIRONMENT, version: '1.1.0', hostPort: ports[service] ?? 0 },
        'after the batch',
      );

    for (const id of ids) {
      const events = await historyOf(client, id);
      const after = events
        .slice(killedAt.get(id))
        .map(workDoneBy)
        .filter((w) => w !== undefined);
      assert.ok(after.length > 0, `${id}: a worker finished it`);
      assert.deepEqual(
        new Set(after),
        new Set([survivor.identity]),
        `${id}: only the survivor worked on it after the kill`,
      );
      const apply = applyIn(events);
      if (lost.includes(id)) {
        assert.equal(apply.identity, survivor.identity, `${id}: the apply the dead worker ran was taken over`);
        assert.ok((apply.attempt ?? 0) >= 2, `${id}: the apply was retried, attempt ${apply.attempt}`);
      }
    }
    t.diagnostic(`killed ${victim.identity} with ${lost.length} applies under way; ${survivor.identity} finished them`);
  });
});
