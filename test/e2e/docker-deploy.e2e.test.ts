/**
 * End to end on the real stack: the Temporal dev server, a Docker engine and a registry, a git repository,
 * and the CLI run as CI runs it, judged by its exit codes.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { simpleGit } from 'simple-git';
import { startDevStack, type DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import { specYaml } from '../support/spec-fixtures.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

describe('deploys to Docker end to end', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let temporal: DevStack;
  let engine: Docker;
  let specFile: string;
  let stagingPort: number;
  let env: Record<string, string>;
  const digests: Record<string, string> = {};

  const as = (user: string) => ({ ...env, DEPLOY_AGENT_USER: user });
  const liveContainer = (environment: string) => engine.getContainer(`web-shop_${environment}`).inspect();
  const version = async (port: number) => (await fetch(`http://127.0.0.1:${port}/version`)).text();

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const repository = `${docker.registry.address}/web-shop`;
    for (const [v, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['2.0.0', false],
    ] as const)
      digests[v] = (await buildServiceImage(docker, { repository, version: v, healthy })).digest;

    const source = join(workDir, 'source');
    await mkdir(source);
    const git = simpleGit({ baseDir: source });
    await git.init().addConfig('user.name', 'Dev').addConfig('user.email', 'dev@example.com');
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) {
      await writeFile(join(source, `feature-${v}.txt`), `${v}\n`);
      await git.add('.').commit(`feature for ${v}`).addTag(`v${v}`);
    }

    stagingPort = await freePort();
    specFile = join(workDir, 'deploy.yaml');
    await writeFile(
      specFile,
      specYaml({
        repository,
        dockerHost: docker.engine.dockerHost,
        hostPort: stagingPort,
        sourceRepository: './source',
      }),
    );
    const port = await freePort();
    temporal = await startDevStack({ port, uiPort: await freePort(), reportsDir: join(workDir, 'reports') });
    env = { TEMPORAL_ADDRESS: temporal.address, TEMPORAL_UI_URL: temporal.uiUrl };
  });

  after(async () => {
    await temporal?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('deploys a version and reports it (exit 0)', async () => {
    const result = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '1.0.0', '--wait'],
      as('ci-bot'),
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /validate: succeeded/);
    assert.match(result.stdout, /track-changes: succeeded .* 1 commits/);
    assert.match(result.stdout, /http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\/web-shop\.staging\//);
    const live = await liveContainer('staging');
    assert.equal(live.Config.Image, `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('rolls back a release whose health check fails (exit 1) to the previous container, verified', async () => {
    const before = await liveContainer('staging');
    const result = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '2.0.0', '--wait', '--json'],
      as('ci-bot'),
    );
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as { state: string; rollback: { consistency: { consistent: boolean } } };
    assert.equal(status.state, 'rolled-back');
    assert.equal(status.rollback.consistency.consistent, true);
    const after = await liveContainer('staging');
    assert.equal(after.Id, before.Id, 'the previous container runs again');
    assert.equal(after.Config.Image, `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    assert.ok(after.State.Running);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('rolls back manually to the previous release', async () => {
    const upgrade = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0', '--wait'],
      as('ci-bot'),
    );
    assert.equal(upgrade.code, 0, upgrade.stdout + upgrade.stderr);
    assert.equal(await version(stagingPort), '1.1.0\n');
    const rollback = await runCli(
      ['rollback', '-f', specFile, '--service', 'web-shop', '--env', 'staging', '--wait'],
      as('oncall'),
    );
    assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
    assert.match(rollback.stdout, /Consistency|restore: succeeded/);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('refuses self-approval and a concurrent deploy, then deploys once approved', async () => {
    const started = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.0.0'], as('ci-bot'));
    assert.equal(started.code, 0, started.stderr);
    const id = deploymentIdIn(started.stdout);
    assert.equal(await runningDeployment('production'), id);
    const waiting = await runCli(['status', id, '--json'], env);
    assert.equal(waiting.code, 6, 'status of a deployment under way: still running');
    assert.equal((JSON.parse(waiting.stdout) as { state: string }).state, 'awaiting-approval');

    const self = await runCli(['approve', id], as('ci-bot'));
    assert.equal(self.code, 2);
    assert.match(self.stderr, /ci-bot requested this deployment and cannot approve it/);

    const second = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.1.0'], as('ci-bot'));
    assert.equal(second.code, 2);
    assert.match(second.stderr, new RegExp(`busy: deployment ${id.replaceAll('.', '\\.')}`));

    const approved = await runCli(['approve', id, '--comment', 'looks good'], as('alice'));
    assert.equal(approved.code, 0, approved.stderr);
    const final = await waitForEnd(id);
    assert.equal(final.code, 0, final.stdout);
    assert.match(final.stdout, /approve by alice .* via update: looks good/);
  });

  it('ends a rejected deploy with exit 3 without touching production', async () => {
    const before = await liveContainer('production');
    const waiting = runCli(
      ['deploy', '-f', specFile, '--env', 'production', '--version', '1.1.0', '--wait'],
      as('ci-bot'),
    );
    const id = await runningDeployment('production');
    const rejected = await runCli(['reject', id, '--comment', 'not during the sale'], as('bob'));
    assert.equal(rejected.code, 0, rejected.stderr);
    const result = await waiting;
    assert.equal(result.code, 3, result.stdout + result.stderr);
    assert.match(result.stdout, /rejected by bob: not during the sale/);
    assert.equal((await liveContainer('production')).Id, before.Id);
  });

  it('exits 4 when the Docker engine is unreachable, with nothing changed', async () => {
    const elsewhere = join(workDir, 'unreachable.yaml');
    const port = await freePort();
    await writeFile(
      elsewhere,
      specYaml({
        repository: `${docker.registry.address}/web-shop`,
        dockerHost: `unix://${join(workDir, 'no-engine.sock')}`,
        hostPort: port,
      }),
    );
    const result = await runCli(
      ['deploy', '-f', elsewhere, '--env', 'staging', '--version', '1.1.0', '--wait', '--json'],
      as('ci-bot'),
    );
    assert.equal(result.code, 4, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as { state: string; errors: string[]; phases: { name: string }[] };
    assert.equal(status.state, 'unreachable');
    assert.match(status.errors.join('\n'), /Docker engine unix:\/\/.*no-engine\.sock is unreachable/);
    assert.ok(!status.phases.some((p) => p.name === 'apply'));
  });

  it('exits 4 when Temporal is unreachable, and 2 on an invalid spec', async () => {
    const closed = await freePort();
    const unreachable = await runCli(['deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0'], {
      TEMPORAL_ADDRESS: `127.0.0.1:${closed}`,
    });
    assert.equal(unreachable.code, 4, unreachable.stderr);
    const bad = join(workDir, 'bad.yaml');
    await writeFile(bad, 'service: web\n');
    const invalid = await runCli(['validate', '-f', bad, '--env', 'staging'], env);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /bad\.yaml: line 1: target: expected "docker" or "kubernetes"/);
  });

  async function waitForEnd(id: string) {
    for (let attempt = 0; attempt < 120; attempt++) {
      const result = await runCli(['status', id], env);
      if (!/: (running|awaiting-approval|compensating)\n/.test(result.stdout)) return result;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`deployment ${id} did not end`);
  }

  async function runningDeployment(environment: string): Promise<string> {
    for (let attempt = 0; attempt < 120; attempt++) {
      const list = await runCli(['list', '--env', environment, '--json'], env);
      const rows = JSON.parse(list.stdout || '[]') as { deploymentId: string; status: string }[];
      const open = rows.find((r) => r.status === 'awaiting-approval');
      if (open) return open.deploymentId;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`no deployment awaiting approval in ${environment}`);
  }
});
