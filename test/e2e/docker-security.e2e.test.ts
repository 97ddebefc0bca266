/**
 * The security rules and safe defaults on the real Docker engine, through the CLI: a release the rules deny is
 * refused at validation (exit 2) with nothing created, a warning reaches the report, and a release deployed with the
 * defaults really runs without capabilities, unable to gain privileges, inside its memory limit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';
import { runCli } from '../support/cli.js';
import { policyObject, specYaml, startTestTemporal, writeTestFiles } from '../support/spec-fixtures.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

describe('security rules on Docker end to end', { timeout: 600_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let temporal: DevStack;
  let engine: Docker;
  let env: Record<string, string>;
  let repository: string;

  /** A spec file whose container block is `container` (YAML lines), the rest as every test's. */
  const specWith = async (name: string, container: string) => {
    const file = join(workDir, `${name}.yaml`);
    const base = specYaml({ repository }).replace(/container:\n {2}resources: .*\n/, '');
    await writeFile(file, `${base}container:\n${container}`);
    return file;
  };
  const deploy = (file: string, environment = 'staging') =>
    runCli(['deploy', '-f', file, '--env', environment, '--version', '1.0.0', '--wait', '--json'], env);
  const containerNames = async () =>
    (await engine.listContainers({ all: true })).flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')));

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'security-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    repository = `${docker.registry.address}/web-shop`;
    await buildServiceImage(docker, { repository, version: '1.0.0', healthy: true });
    const policy = policyObject({
      sourceRoots: [workDir],
      dockerHost: docker.engine.dockerHost,
      ports: { staging: await freePort(), production: await freePort() },
    });
    const { policyFile } = await writeTestFiles(workDir, { policy });
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
  });

  after(async () => {
    await temporal?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('refuses a privileged release at validation (exit 2), creating nothing', async () => {
    const file = await specWith('privileged', '  privileged: true\n  resources: { memory: 64m, cpus: 0.5 }\n');
    const result = await deploy(file);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as DeploymentStatus;
    assert.equal(status.state, 'invalid');
    assert.deepEqual(
      status.securityFindings?.map((f) => [f.rule, f.object, f.field, f.action]),
      [['no-privileged', 'container web-shop_staging', 'container.privileged', 'deny']],
    );
    assert.ok(!status.phases.some((p) => p.name === 'apply'), 'nothing was applied');
    assert.ok(!(await containerNames()).some((n) => n.startsWith('web-shop_staging')));
  });

  it('refuses a host mount in a protected environment (exit 2), before any approval, creating nothing', async () => {
    const file = await specWith(
      'mount',
      '  mounts: [{ source: /etc, target: /host-etc }]\n  resources: { memory: 64m, cpus: 0.5 }\n',
    );
    const result = await runCli(
      ['deploy', '-f', file, '--env', 'production', '--version', '1.0.0', '--wait', '--json'],
      { ...env, DEPLOY_AGENT_USER: 'ci-bot' },
    );
    assert.equal(result.code, 2, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as DeploymentStatus;
    assert.ok(status.securityFindings?.some((f) => f.rule === 'no-host-mounts' && f.action === 'deny'));
    assert.ok(!(await containerNames()).some((n) => n.startsWith('web-shop_production')));
  });

  it('refuses a secret in plain text before starting anything (exit 2)', async () => {
    const file = await specWith('secret', '  env: { DB_PASS: marker-value-123 }\n');
    const result = await deploy(file);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stderr, /container\.env\.DB_PASS: looks like a secret in plain text/);
    assert.ok(!(result.stdout + result.stderr).includes('marker-value-123'));
  });

  it('deploys with a warning in the report, and the safe defaults on the container (docker inspect)', async () => {
    // No CPU limit: a warning outside protected environments.
    const file = await specWith('defaults', '  resources: { memory: 64m }\n');
    const result = await deploy(file);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as DeploymentStatus;
    assert.deepEqual(
      status.securityFindings?.map((f) => [f.rule, f.field, f.action]),
      [['resource-limits', 'container.resources.cpus', 'warn']],
    );
    assert.ok(status.reportPath);
    const report = await readFile(status.reportPath, 'utf8');
    assert.match(report, /warning resource-limits: container web-shop_staging container\.resources\.cpus/);

    const live = await engine.getContainer('web-shop_staging').inspect();
    assert.deepEqual(live.HostConfig.CapDrop, ['ALL']);
    assert.deepEqual(live.HostConfig.SecurityOpt, ['no-new-privileges:true']);
    assert.equal(live.HostConfig.Memory, 64 * 1024 ** 2);
    assert.equal(live.HostConfig.Privileged, false);
    assert.equal(live.State.Running, true);
  });
});
