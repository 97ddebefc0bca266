/**
 * Faults on the real stack: the Docker engine itself stops in the middle of a deploy and comes back ten seconds
 * later, with the same data root and socket. Stopped while the apply pulls its image, the deploy ends succeeded or
 * rolled back; stopped as compensation starts, the restore is retried within the rollback budget, and with the engine
 * down past that budget the deployment waits in compensation-failed until an operator retries it.
 *
 * The engine is stopped as a service manager stops it, SIGTERM to dockerd alone, at a point the test waits for: the
 * apply's download of the new image's layer held at a registry proxy, or compensation seen starting. Each run has an
 * environment of its own, so its containers, fence and host port are its own on the one engine.
 *
 * A dockerd restart stops every running container and starts again those whose restart policy says so: the live
 * release (`unless-stopped`) comes back, the kept rollback points (stopped by the deploy) stay stopped. Whatever the
 * ending, once the engine is back it must show exactly the release the report names, running and serving, no
 * deployment with two containers, and the fence volume held by the last attempt that changed the target.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { type Client, Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import type proto from '@temporalio/proto';
import { FINAL_STATES, lockId, parseDeploymentId, type DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort, sleep } from '../../stack/processes.js';
import { statusQuery } from '../../workflows/messages.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import { layersOnlyIn, startHoldingProxy, type HoldingProxy } from '../support/holding-proxy.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../support/spec-fixtures.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

const SERVICE = 'web-shop';
/** How long the engine stays down in the runs that bring it back while the deployment still runs. */
const ENGINE_DOWN_MS = 10_000;
/** The activities that take the target's fence before they change it. */
const FENCED_ACTIVITIES = new Set(['applyRelease', 'restoreRelease']);
const FENCE_HOLDER_LABEL = 'deploy-agent.fence-holder';
/** After the deployment ended, how long the engine is watched for a late change (a container the restart revives). */
const WATCH_ROUNDS = 5;

/** One activity of a run: its position (the fence token's sequence), its last attempt, and how it ended. */
interface ActivityRun {
  type: string;
  sequence: number;
  attempt: number;
  outcome: 'completed' | 'failed' | 'timed-out' | 'canceled' | 'open';
}

function activityRunsIn(events: HistoryEvent[]): ActivityRun[] {
  const runs = new Map<string, ActivityRun>();
  const ended = (scheduledEventId: unknown, outcome: ActivityRun['outcome']) => {
    const run = runs.get(String(scheduledEventId));
    if (run) run.outcome = outcome;
  };
  for (const event of events) {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled)
      runs.set(String(event.eventId), {
        type: scheduled.activityType?.name ?? '?',
        sequence: Number(scheduled.activityId),
        attempt: 0,
        outcome: 'open',
      });
    const started = event.activityTaskStartedEventAttributes;
    // Written once the activity closes, with the number of its last attempt.
    if (started) {
      const run = runs.get(String(started.scheduledEventId));
      if (run) run.attempt = started.attempt ?? 0;
    }
    ended(event.activityTaskCompletedEventAttributes?.scheduledEventId, 'completed');
    ended(event.activityTaskFailedEventAttributes?.scheduledEventId, 'failed');
    ended(event.activityTaskTimedOutEventAttributes?.scheduledEventId, 'timed-out');
    ended(event.activityTaskCanceledEventAttributes?.scheduledEventId, 'canceled');
  }
  return [...runs.values()];
}

const describeRuns = (runs: ActivityRun[]): string =>
  runs.map((r) => `${r.sequence}:${r.type} attempt ${r.attempt} ${r.outcome}`).join(', ');

/** Polls `probe` until it holds; bounded by a number of polls, never by a clock. */
async function until(what: string, probe: () => Promise<boolean>, polls = 600, intervalMs = 100): Promise<void> {
  for (let poll = 0; poll < polls; poll++) {
    if (await probe().catch(() => false)) return;
    await sleep(intervalMs);
  }
  throw new Error(`gave up waiting until ${what}`);
}

describe('the Docker engine stopped during a deploy', { timeout: 1_500_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let engine: Docker;
  let temporal: DevStack;
  let connection: Connection;
  let client: Client;
  let proxy: HoldingProxy;
  let specFile: string;
  let env: Record<string, string>;
  /** The host port of each environment. */
  const ports: Record<string, number> = {};

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-engine-faults-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath, timeout: 30_000 });
    const built = `${docker.registry.address}/${SERVICE}`;
    for (const version of ['1.0.0', '1.1.0'])
      await buildServiceImage(docker, { repository: built, version, healthy: true });
    await buildServiceImage(docker, { repository: built, version: '2.0.0', healthy: false });
    // The engine built 1.1.0 itself: without this, its pull would find every layer at hand and download nothing.
    await engine.getImage(`${built}:1.1.0`).remove();
    proxy = await startHoldingProxy(docker.registry.address);
    for (const environment of ['staging', 'canary', 'qa']) ports[environment] = await freePort();
    const environment = (name: string, budgets: Record<string, string>) =>
      dockerEnvironment(docker.engine.dockerHost, { [SERVICE]: ports[name] ?? 0 }, { budgets });
    let policyFile: string;
    ({ specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ service: SERVICE, repository: `${proxy.address}/${SERVICE}`, healthyWithin: '6s' }),
      policy: testPolicy([workDir], {
        staging: environment('staging', { environmentUpdate: '3m', rollback: '2m' }),
        canary: environment('canary', { rollback: '2m' }),
        qa: environment('qa', { rollback: '10s' }),
      }),
    }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
    connection = await Connection.connect({ address: temporal.address });
    client = testClient(connection);
  });

  // A run that failed half-way must not leave the next one without an engine, or with its downloads held.
  afterEach(async () => {
    proxy?.release();
    await docker?.engine.startDaemon();
  });

  after(async () => {
    proxy?.release();
    // The worker goes first, so that nothing changes the engine while it is taken down.
    const first = await Promise.allSettled([connection?.close(), temporal?.stop(), proxy?.close()]);
    const second = await Promise.allSettled([docker?.stop()]);
    await rm(workDir, { recursive: true, force: true });
    const failures = [...first, ...second].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) throw new AggregateError(failures, 'stopping the stack');
  });

  const deploy = (environment: string, version: string) =>
    runCli(['deploy', '-f', specFile, '--env', environment, '--version', version, '--wait'], env, 420_000);
  const cli = (...args: string[]) => runCli(args, env);
  const handleOf = (deploymentId: string) => {
    const { workflowId, runId } = parseDeploymentId(deploymentId);
    return client.workflow.getHandle(workflowId, runId);
  };
  const engineAnswers = () =>
    engine.ping().then(
      () => true,
      () => false,
    );

  /** Stops dockerd; `onceSilent` runs as soon as it no longer answers, while its shutdown stops the containers. */
  async function stopEngine(onceSilent?: () => void): Promise<void> {
    const stopped = docker.engine.stopDaemon();
    await until('the engine stops answering', async () => !(await engineAnswers()));
    onceSilent?.();
    await stopped;
  }

  async function restartEngine(): Promise<void> {
    await docker.engine.startDaemon();
    assert.ok(await engineAnswers(), 'the engine answers again');
  }

  /** What `status --json` says: the report of an ended deployment, or where an open one stands. */
  async function statusOf(deploymentId: string): Promise<{ code: number; status: DeploymentStatus }> {
    const result = await cli('status', deploymentId, '--json');
    return { code: result.code, status: JSON.parse(result.stdout) as DeploymentStatus };
  }

  /** Polls `status --json` until the deployment has ended. */
  async function endOf(deploymentId: string): Promise<{ code: number; status: DeploymentStatus }> {
    for (let poll = 0; poll < 300; poll++) {
      const answer = await statusOf(deploymentId);
      if (FINAL_STATES.has(answer.status.state)) return answer;
      await sleep(1_000);
    }
    throw new Error(`${deploymentId} did not end`);
  }

  /**
   * Resolves as soon as compensation of the deploy of `version` starts, saying what showed it first: the status query
   * (what `status --json` prints, polled in-process, since a CLI process per poll would see compensation only once it
   * is over) in state `compensating` or phase `compensate`, or the engine reporting that the restore replaced the
   * fence volume, its first change, once the release is being verified. The restore takes a few hundred milliseconds:
   * the engine's own event makes sure the stop lands inside it rather than after it.
   */
  async function compensationStarted(environment: string, version: string): Promise<string> {
    const handle = client.workflow.getHandle(lockId(SERVICE, environment));
    const fence = `${SERVICE}_${environment}.fence`;
    const events = (await engine.getEvents({
      filters: { type: ['volume'], event: ['destroy'], volume: [fence] },
    })) as Readable;
    let verifying = false;
    let seen: ((what: string) => void) | undefined;
    const fenceReplaced = new Promise<string>((resolve) => (seen = resolve));
    events.on('data', () => {
      if (verifying) seen?.(`the engine removed ${fence} for the restore`);
    });
    events.on('error', () => undefined);
    let watching = true;
    const polled = (async () => {
      for (let poll = 0; poll < 12_000 && watching; poll++) {
        const status = await handle.query(statusQuery).catch(() => undefined);
        if (status?.version === version) {
          if (status.state === 'compensating' || status.phase === 'compensate')
            return `status ${status.state}, phase ${status.phase}`;
          if (FINAL_STATES.has(status.state))
            throw new Error(`the deploy of ${version} ended ${status.state} before compensation was seen`);
          verifying ||= status.phase === 'verify';
        }
        await sleep(25);
      }
      if (watching) throw new Error(`compensation of the deploy of ${version} to ${environment} never started`);
      return 'no longer watched';
    })();
    try {
      return await Promise.race([fenceReplaced, polled]);
    } finally {
      watching = false;
      events.destroy();
      await polled.catch(() => undefined);
    }
  }

  async function activityRuns(deploymentId: string): Promise<ActivityRun[]> {
    return activityRunsIn((await handleOf(deploymentId).fetchHistory()).events ?? []);
  }

  /**
   * The engine, once back, against the report: exactly one release of the environment runs, the one the report
   * names (applied, or restored to), under the live name and serving its version; no deployment has two containers;
   * every other container is a stopped rollback point; and the fence is held by the last attempt that changed the
   * target. Watched for a few rounds: a container the restart revives late would show up here.
   */
  async function assertEngineMatches(environment: string, status: DeploymentStatus, what: string): Promise<string> {
    const expected = status.state === 'succeeded' ? status.applied : status.rollback?.restoredTo;
    assert.ok(expected?.handle && expected.version, `${what}: the report names the release that runs`);
    const live = `${SERVICE}_${environment}`;
    for (let round = 0; round < WATCH_ROUNDS; round++) {
      const at = `${what}, round ${round}`;
      const containers = await engine.listContainers({
        all: true,
        filters: { label: [`deploy-agent.service=${SERVICE}`, `deploy-agent.environment=${environment}`] },
      });
      const running = containers.filter((c) => c.State === 'running');
      assert.deepEqual(
        running.map((c) => [c.Names.join(','), c.Id, c.Labels['deploy-agent.version']]),
        [[`/${live}`, expected.handle, expected.version]],
        `${at}: the one running container is the release of the report`,
      );
      const ids = containers.map((c) => c.Labels['deploy-agent.deployment-id']);
      assert.equal(new Set(ids).size, ids.length, `${at}: a deployment has two containers: ${ids.join(', ')}`);
      for (const kept of containers.filter((c) => c.Id !== expected.handle))
        assert.match(kept.Names.join(','), new RegExp(`^/${live}\\.kept-`), `${at}: ${kept.Names.join(',')}`);
      let served = '';
      await until(`${at}: port ${ports[environment]} serves ${expected.version}`, async () => {
        served = await (await fetch(`http://127.0.0.1:${ports[environment]}/version`)).text();
        return served === `${expected.version}\n`;
      });
      await sleep(1_000);
    }

    const runs = await activityRuns(status.deploymentId);
    const last = runs.filter((r) => FENCED_ACTIVITIES.has(r.type)).at(-1);
    assert.equal(last?.outcome, 'completed', `${what}: the last change of the target completed: ${describeRuns(runs)}`);
    const volume = (await engine.getVolume(`${live}.fence`).inspect()) as { Labels?: Record<string, string> | null };
    const holder = JSON.parse(volume.Labels?.[FENCE_HOLDER_LABEL] ?? 'null') as unknown;
    assert.deepEqual(
      holder,
      { deploymentId: status.deploymentId, sequence: last.sequence, attempt: last.attempt },
      `${what}: the fence is held by the last attempt (${describeRuns(runs)})`,
    );
    return `${what}; activities ${describeRuns(runs)}; fence held by ${last.type} attempt ${last.attempt}`;
  }

  it('stopped while the apply pulls its image: the deploy ends as its report says, on the engine once back', async (t) => {
    const first = await deploy('staging', '1.0.0');
    assert.equal(first.code, 0, first.stdout + first.stderr);

    proxy.hold(await layersOnlyIn(docker.registry.address, SERVICE, '1.1.0', '1.0.0'));
    const deploying = deploy('staging', '1.1.0');
    await until('the pull of 1.1.0 stalls at the registry', () => Promise.resolve(proxy.held > 0), 1_200);
    await stopEngine(() => proxy.release());
    await sleep(ENGINE_DOWN_MS);
    await restartEngine();

    const result = await deploying;
    const id = deploymentIdIn(result.stdout);
    const { code, status } = await statusOf(id);
    const what = `deploy of 1.1.0 ${status.state}`;
    assert.equal(code, result.code, `${what}: status and deploy --wait agree`);
    if (status.state === 'succeeded') {
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(status.applied?.version, '1.1.0', what);
    } else {
      assert.equal(status.state, 'rolled-back', `${what}: ${status.errors.join('; ')}`);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.equal(status.rollback?.restoredTo.version, '1.0.0', what);
      assert.equal(status.rollback?.consistency?.consistent, true, `${what}: the restore was verified`);
    }
    const applies = (await activityRuns(id)).filter((r) => r.type === 'applyRelease');
    assert.ok(
      applies.some((r) => r.attempt >= 2),
      `${what}: the engine stop failed an attempt of the apply: ${describeRuns(applies)}`,
    );
    t.diagnostic(await assertEngineMatches('staging', status, what));
  });

  it('stopped as compensation starts, back within the rollback budget: rolled back to 1.0.0, verified', async (t) => {
    const first = await deploy('canary', '1.0.0');
    assert.equal(first.code, 0, first.stdout + first.stderr);

    const deploying = deploy('canary', '2.0.0');
    t.diagnostic(`compensation seen by: ${await compensationStarted('canary', '2.0.0')}`);
    await stopEngine();
    await sleep(ENGINE_DOWN_MS);
    await restartEngine();

    const result = await deploying;
    const id = deploymentIdIn(result.stdout);
    const { code, status } = await statusOf(id);
    const what = `deploy of 2.0.0 ${status.state}`;
    assert.equal(status.state, 'rolled-back', `${what}: ${status.errors.join('; ')}\n${result.stdout}`);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.equal(code, 1, what);
    assert.equal(status.rollback?.restoredTo.version, '1.0.0', what);
    assert.equal(status.rollback?.consistency?.consistent, true, `${what}: the restore was verified`);
    assert.equal(status.rollback?.attempts, 1, `${what}: compensation succeeded without an operator`);
    const compensation = (await activityRuns(id)).filter(
      (r) => r.type === 'restoreRelease' || r.type === 'verifyRelease',
    );
    assert.ok(
      compensation.some((r) => r.attempt >= 2),
      `${what}: the engine stop failed an attempt of the compensation: ${describeRuns(compensation)}`,
    );
    t.diagnostic(await assertEngineMatches('canary', status, what));
  });

  it('stopped as compensation starts, down past the rollback budget: compensation-failed, then retry rolls back', async (t) => {
    const first = await deploy('qa', '1.0.0');
    assert.equal(first.code, 0, first.stdout + first.stderr);

    const deploying = deploy('qa', '2.0.0');
    t.diagnostic(`compensation seen by: ${await compensationStarted('qa', '2.0.0')}`);
    await stopEngine();
    // The engine stays down until deploy --wait has given up on the compensation.
    const result = await deploying;
    assert.equal(result.code, 5, result.stdout + result.stderr);
    assert.match(result.stdout, /compensation-failed/);
    const id = deploymentIdIn(result.stdout);
    const waiting = await statusOf(id);
    assert.equal(waiting.code, 5, JSON.stringify(waiting.status));
    assert.equal(waiting.status.state, 'compensation-failed');
    await restartEngine();

    const resolved = await runCli(['resolve', id, '--action', 'retry', '--reason', 'engine back'], {
      ...env,
      DEPLOY_AGENT_USER: 'oncall',
    });
    assert.equal(resolved.code, 0, resolved.stdout + resolved.stderr);
    const { code, status } = await endOf(id);
    const what = `deploy of 2.0.0 retried by an operator, ${status.state}`;
    assert.equal(status.state, 'rolled-back', `${what}: ${status.errors.join('; ')}`);
    assert.equal(code, 1, what);
    assert.equal(status.rollback?.restoredTo.version, '1.0.0', what);
    assert.equal(status.rollback?.consistency?.consistent, true, `${what}: the restore was verified`);
    assert.equal(status.rollback?.attempts, 2, what);
    assert.deepEqual(
      status.rollback?.operatorDecisions.map((d) => [d.action, d.operator]),
      [['retry', 'oncall (unverified, insecure dev mode)']],
      what,
    );
    t.diagnostic(await assertEngineMatches('qa', status, what));
  });
});
