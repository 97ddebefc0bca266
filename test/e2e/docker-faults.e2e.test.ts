/**
 * Faults on the real stack: a registry that stalls in the middle of a deploy's pull. The environment-update budget
 * runs out, compensation restores the previous release, and the stalled apply, however late its pull finishes,
 * must never change the target again: a verified rollback means the old release is what runs.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
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

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

/** After the stalled pull is released, how long the target is watched for a leftover change. */
const WATCH_ROUNDS = 15;

describe('a deploy whose image pull stalls past its budget', { timeout: 600_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let temporal: DevStack;
  let engine: Docker;
  let proxy: HoldingProxy;
  let specFile: string;
  let hostPort: number;
  let env: Record<string, string>;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-faults-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const built = `${docker.registry.address}/web-shop`;
    for (const version of ['1.0.0', '1.1.0'])
      await buildServiceImage(docker, { repository: built, version, healthy: true });
    await buildServiceImage(docker, { repository: built, version: '2.0.0', healthy: false });
    // The engine built 1.1.0 itself: without this, its pull would find every layer at hand and download nothing.
    await engine.getImage(`${built}:1.1.0`).remove();
    proxy = await startHoldingProxy(docker.registry.address);
    hostPort = await freePort();
    let policyFile: string;
    ({ specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ repository: `${proxy.address}/web-shop` }),
      policy: testPolicy([workDir], {
        staging: dockerEnvironment(
          docker.engine.dockerHost,
          { 'web-shop': hostPort },
          { budgets: { environmentUpdate: '5s' } },
        ),
      }),
    }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
  });

  let temporalStopped = false;
  after(async () => {
    proxy?.release();
    if (!temporalStopped) await temporal?.stop();
    await proxy?.close();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  const deploy = (version: string, ...more: string[]) =>
    runCli(['deploy', '-f', specFile, '--env', 'staging', '--version', version, '--wait', ...more], env, 300_000);
  const cli = (...args: string[]) => runCli(args, env);
  const live = () => engine.getContainer('web-shop_staging').inspect();
  const servedVersion = async () => (await fetch(`http://127.0.0.1:${hostPort}/version`)).text();

  it('ends rolled back, and the stalled apply never changes the target after the verified rollback', async () => {
    const first = await deploy('1.0.0');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const old = await live();

    proxy.hold(await layersOnlyIn(docker.registry.address, 'web-shop', '1.1.0', '1.0.0'));
    const second = await deploy('1.1.0');
    assert.equal(second.code, 1, second.stdout + second.stderr);
    assert.match(second.stdout, /rolled-back/);
    assert.match(second.stdout, /environment-update exceeded its budget of 5s/);
    assert.ok(proxy.held > 0, 'the pull of 1.1.0 reached the registry and stalled there');
    const failedDeployment = deploymentIdIn(second.stdout);

    // The stalled download now completes at once: an apply still running would replace the container right after.
    proxy.release();
    for (let round = 0; round < WATCH_ROUNDS; round++) {
      const current = await live();
      assert.equal(current.Id, old.Id, `round ${round}: the live container was replaced`);
      assert.equal(current.State.Running, true, `round ${round}: the restored container stopped`);
      assert.equal(await servedVersion(), '1.0.0\n');
      await sleep(1_000);
    }
    const containers = await engine.listContainers({
      all: true,
      filters: { label: ['deploy-agent.service=web-shop'] },
    });
    assert.deepEqual(
      containers.filter((c) => c.Labels['deploy-agent.deployment-id'] === failedDeployment).map((c) => c.Names),
      [],
      'no container of the failed deployment exists',
    );
    assert.equal(containers.filter((c) => c.State === 'running').length, 1, 'exactly one release runs');
  });

  it('exits 5 as soon as compensation fails, and status and resolve agree with it', async () => {
    // The rollback point disappears while the unhealthy release is being verified: the restore cannot succeed.
    const removal = removeRollbackPointWhenKept();
    const result = await deploy('2.0.0');
    await removal;
    assert.equal(result.code, 5, result.stdout + result.stderr);
    assert.match(result.stdout, /compensation-failed/);
    assert.match(result.stderr, /needs an operator/);
    const id = deploymentIdIn(result.stdout);

    const status = await cli('status', id);
    assert.equal(status.code, 5, status.stdout + status.stderr);
    assert.match(status.stdout, /: compensation-failed/);

    const resolved = await runCli(['resolve', id, '--action', 'abandon', '--reason', 'restored by hand'], {
      ...env,
      DEPLOY_AGENT_USER: 'oncall',
    });
    assert.equal(resolved.code, 0, resolved.stdout + resolved.stderr);
    const again = await runCli(['resolve', id, '--action', 'retry'], { ...env, DEPLOY_AGENT_USER: 'oncall' });
    assert.equal(again.code, 2, 'a deployment that ended cannot be resolved again');
    const ended = await cli('status', id);
    assert.equal(ended.code, 5, ended.stdout + ended.stderr);
    assert.match(ended.stdout, /: abandoned/);
  });

  it('exits 6 with the id when --timeout runs out, and 5 for a run Temporal terminated', async () => {
    proxy.hold(await layersOnlyIn(docker.registry.address, 'web-shop', '1.1.0', '1.0.0'));
    const waited = await deploy('1.1.0', '--timeout', '3s');
    assert.equal(waited.code, 6, waited.stdout + waited.stderr);
    assert.match(waited.stderr, /still running when --timeout ran out/);
    const id = deploymentIdIn(waited.stdout);
    const running = await cli('status', id);
    assert.equal(running.code, 6, running.stdout + running.stderr);

    const [workflowId, runId] = [id.slice(0, id.lastIndexOf('.')), id.slice(id.lastIndexOf('.') + 1)];
    const connection = await Connection.connect({ address: temporal.address });
    try {
      const handle = testClient(connection).workflow.getHandle(workflowId, runId);
      await handle.terminate('test: an operator pulled the plug');
    } finally {
      await connection.close();
    }
    proxy.release();
    const status = await cli('status', id);
    assert.equal(status.code, 5, status.stdout + status.stderr);
    assert.match(status.stdout, /terminated by Temporal .* operator needed/);
    const list = await cli('list', '--env', 'staging', '--json');
    const row = (JSON.parse(list.stdout) as { deploymentId: string; status: string }[]).find(
      (r) => r.deploymentId === id,
    );
    assert.equal(row?.status, 'terminated (operator needed)');
  });

  // Last: it stops Temporal.
  it('exits 7, outcome unknown, when Temporal stops answering while --wait follows a deploy', async () => {
    proxy.hold(await layersOnlyIn(docker.registry.address, 'web-shop', '1.1.0', '1.0.0'));
    const waiting = deploy('1.1.0');
    for (let attempt = 0; attempt < 100 && !(await cli('list', '--json')).stdout.includes('"running"'); attempt++)
      await sleep(200);
    temporalStopped = true;
    await temporal.stop();
    const result = await waiting;
    assert.equal(result.code, 7, result.stdout + result.stderr);
    assert.match(result.stderr, /outcome unknown: .*the deployment may still be running/);
    assert.match(result.stderr, /deploy-agent status web-shop\.staging\./);
  });

  /** Removes the container kept as rollback point as soon as the deploy has retired it. */
  async function removeRollbackPointWhenKept(): Promise<void> {
    for (let attempt = 0; attempt < 600; attempt++) {
      const kept = await engine.listContainers({ all: true, filters: { name: ['web-shop_staging.kept-'] } });
      if (kept[0]) {
        await engine.getContainer(kept[0].Id).remove({ force: true });
        return;
      }
      await sleep(100);
    }
    throw new Error('the deploy never kept a rollback point');
  }
});
