/**
 * The worker process SIGKILLed after every activity of a deploy that fails and is compensated, and of a manual
 * rollback: each run is started again from the same baseline, the worker is killed right after its k-th activity
 * ended, a new worker takes over, and the deployment must end as it does without a crash, with one release running
 * and no duplicate container.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { type Client, Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort, sleep } from '../../stack/processes.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../support/spec-fixtures.js';
import {
  activityEnded,
  assertOneRelease,
  deploymentHandle,
  startWorkerProcess,
  type WorkerProcess,
} from '../support/worker-process.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

describe('the worker SIGKILLed at every activity boundary', { timeout: 2_400_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let engine: Docker;
  let temporal: DevStack;
  let connection: Connection;
  let client: Client;
  let specFile: string;
  let policyFile: string;
  let hostPort: number;
  let env: Record<string, string>;
  let worker: WorkerProcess | undefined;
  let workers = 0;

  function startWorker(): void {
    worker = startWorkerProcess({
      env,
      policyFile,
      reportsDir: join(workDir, 'reports'),
      logFile: join(workDir, `worker-${++workers}.log`),
    });
  }

  async function killWorker(): Promise<void> {
    const dying = worker;
    worker = undefined;
    await dying?.kill();
  }

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-crash-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const repository = `${docker.registry.address}/web-shop`;
    for (const [version, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['2.0.0', false],
    ] as const)
      await buildServiceImage(docker, { repository, version, healthy });
    hostPort = await freePort();
    ({ specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ repository, healthyWithin: '4s' }),
      policy: testPolicy([workDir], {
        staging: dockerEnvironment(docker.engine.dockerHost, { 'web-shop': hostPort }),
      }),
    }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile, { worker: false }));
    connection = await Connection.connect({ address: temporal.address });
    client = testClient(connection);
    startWorker();
  });

  after(async () => {
    await killWorker();
    await connection?.close();
    await temporal?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  const cli = async (...args: string[]) => {
    const result = await runCli(args, env, 300_000);
    return { ...result, output: result.stdout + result.stderr };
  };

  async function deployAndWait(version: string): Promise<void> {
    const result = await cli('deploy', '-f', specFile, '--env', 'staging', '--version', version, '--wait');
    assert.equal(result.code, 0, `baseline deploy of ${version}: ${result.output}`);
  }

  const handleOf = (deploymentId: string) => deploymentHandle(client, deploymentId);

  async function activitiesEnded(deploymentId: string): Promise<number> {
    const history = await handleOf(deploymentId).fetchHistory();
    return (history.events ?? []).filter(activityEnded).length;
  }

  /** The invariants every ending must keep: one release runs, serving `version`, and no container twice. */
  const assertServes = (version: string, what: string) =>
    assertOneRelease(engine, { service: 'web-shop', environment: 'staging', version, hostPort }, what);

  interface Scenario {
    name: string;
    baseline: string[];
    start: string[];
    state: DeploymentStatus['state'];
    serves: string;
  }

  async function startScenario(scenario: Scenario): Promise<string> {
    for (const version of scenario.baseline) await deployAndWait(version);
    const started = await cli(...scenario.start);
    assert.equal(started.code, 0, started.output);
    return deploymentIdIn(started.stdout);
  }

  async function crashLoop(scenario: Scenario): Promise<void> {
    const reference = await startScenario(scenario);
    const status = (await handleOf(reference).result()) as DeploymentStatus;
    assert.equal(status.state, scenario.state, `${scenario.name} without a crash`);
    const boundaries = await activitiesEnded(reference);
    assert.ok(boundaries >= 5, `${scenario.name}: ${boundaries} activities`);
    for (let k = 1; k <= boundaries; k++) {
      const what = `${scenario.name}, worker killed after activity ${k} of ${boundaries}`;
      const id = await startScenario(scenario);
      let ended = 0;
      for (let poll = 0; poll < 600 && ended < k; poll++) {
        ended = await activitiesEnded(id);
        if (ended < k) await sleep(50);
      }
      assert.ok(ended >= k, `${what}: never got there`);
      await killWorker();
      startWorker();
      const result = (await handleOf(id).result()) as DeploymentStatus;
      assert.equal(result.state, scenario.state, `${what}: ${result.errors.join('; ')}`);
      await assertServes(scenario.serves, what);
    }
  }

  it('a deploy that fails its health check still ends rolled back to the verified old release', async () => {
    await crashLoop({
      name: 'compensated deploy',
      baseline: ['1.0.0'],
      start: ['deploy', '-f', specFile, '--env', 'staging', '--version', '2.0.0'],
      state: 'rolled-back',
      serves: '1.0.0',
    });
  });

  it('a manual rollback still ends with the previous release running, verified', async () => {
    await crashLoop({
      name: 'manual rollback',
      baseline: ['1.0.0', '1.1.0'],
      start: ['rollback', '-f', specFile, '--env', 'staging'],
      state: 'succeeded',
      serves: '1.0.0',
    });
  });

  it('status answers from the search attributes while no worker runs, and the deployment goes on once one does', async () => {
    await killWorker();
    const started = await cli('deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0');
    assert.equal(started.code, 0, started.output);
    const id = deploymentIdIn(started.stdout);
    const status = await cli('status', id);
    assert.equal(status.code, 6, status.output);
    assert.match(status.stdout, /deploy of web-shop 1\.1\.0 to staging: running/);
    assert.match(status.stdout, /no worker answered .*from the search attributes/);
    startWorker();
    const result = (await handleOf(id).result()) as DeploymentStatus;
    assert.equal(result.state, 'succeeded');
    await assertServes('1.1.0', 'after the worker came back');
  });
});
