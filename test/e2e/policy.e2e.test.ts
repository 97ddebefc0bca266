/**
 * The platform policy's rules end to end, on the real stack (the Temporal dev server and its visibility, a Docker
 * engine and a registry) and the CLI: promotion order read from the deployment history, freeze windows and their
 * break-glass override, and kubeconfigs whose credential program the policy does not allow.
 */
import assert from 'node:assert/strict';
import { access, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import type { AuditRow } from '../../client/audit.js';
import type { DeploymentStatus } from '../../domain/deployment.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';
import { runCli } from '../support/cli.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  type TestTemporal,
  testPolicy,
} from '../support/spec-fixtures.js';
import { writePolicy } from '../../stack/policy.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

const MANIFESTS = fileURLToPath(new URL('../../../test/fixtures/kubernetes/web-shop', import.meta.url));
const HOUR = 3_600_000;

describe('the platform policy decides: promotion, freezes, credential programs', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let engine: Docker;
  let stack: TestTemporal;
  let specFile: string;
  let kubernetesSpecFile: string;
  const marker = () => join(workDir, 'exec-plugin-ran');

  const as = (user: string) => ({ ...stack.env, DEPLOY_AGENT_USER: user });
  const deploy = (user: string, environment: string, version: string, ...more: string[]) =>
    runCli(
      ['deploy', '-f', specFile, '--env', environment, '--version', version, '--wait', '--json', ...more],
      as(user),
    );
  const container = (environment: string) =>
    engine
      .getContainer(`web-shop_${environment}`)
      .inspect()
      .catch(() => undefined);

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-policy-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const repository = `${docker.registry.address}/web-shop`;
    for (const version of ['1.0.0', '1.1.0']) await buildServiceImage(docker, { repository, version, healthy: true });
    specFile = join(workDir, 'deploy.yaml');
    await writeFile(specFile, specYaml({ repository }));

    // A kubeconfig whose user runs a program: the program would leave a marker if the worker ever ran it.
    const kubeconfig = join(workDir, 'exec.kubeconfig');
    await writeFile(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: 'https://127.0.0.1:${await freePort()}' } }]
users: [{ name: plugin-user, user: { exec: { apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'touch ${marker()}'] } } }]
contexts: [{ name: c, context: { cluster: c, user: plugin-user } }]
current-context: c
`,
    );
    await cp(MANIFESTS, join(workDir, 'manifests'), { recursive: true });
    kubernetesSpecFile = join(workDir, 'deploy-kubernetes.yaml');
    await writeFile(
      kubernetesSpecFile,
      `service: web-shop\ntarget: kubernetes\nimage: { repository: ${repository} }\nrelease: { manifests: ./manifests }\n`,
    );

    const host = docker.engine.dockerHost;
    const now = Date.now();
    const policyFile = await writePolicy(
      join(workDir, 'policy.yaml'),
      testPolicy([workDir], {
        staging: dockerEnvironment(host, { 'web-shop': await freePort() }),
        production: dockerEnvironment(host, { 'web-shop': await freePort() }, { promotedFrom: 'staging' }),
        frozen: dockerEnvironment(
          host,
          { 'web-shop': await freePort() },
          {
            freezes: [
              {
                from: new Date(now - HOUR).toISOString(),
                until: new Date(now + HOUR).toISOString(),
                reason: 'end-of-year freeze',
              },
            ],
            breakGlass: ['erin', 'group:sre'],
          },
        ),
        cluster: { kubernetes: { kubeconfig, namespace: 'web-shop' } },
      }),
    );
    stack = await startTestTemporal(workDir, policyFile);
  });

  after(async () => {
    await stack?.temporal.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('refuses a version in production that never succeeded in staging, then accepts it once it has', async () => {
    const early = await deploy('ci-bot', 'production', '1.0.0');
    assert.equal(early.code, 2, early.stdout + early.stderr);
    const refused = JSON.parse(early.stdout) as DeploymentStatus;
    assert.match(
      refused.errors.join('\n'),
      /1\.0\.0 has not been deployed successfully to staging, which production is promoted from/,
    );
    assert.equal(await container('production'), undefined, 'nothing was deployed');

    const staging = await deploy('ci-bot', 'staging', '1.0.0');
    assert.equal(staging.code, 0, staging.stdout + staging.stderr);
    const promoted = await deploy('ci-bot', 'production', '1.0.0');
    assert.equal(promoted.code, 0, promoted.stdout + promoted.stderr);
    assert.ok((await container('production'))?.State.Running);
    // Another version is judged on its own history.
    const other = await deploy('ci-bot', 'production', '1.1.0');
    assert.equal(other.code, 2, other.stdout + other.stderr);
  });

  it('refuses a deploy inside a freeze window, and a break-glass by someone the policy does not name', async () => {
    const frozen = await deploy('ci-bot', 'frozen', '1.0.0');
    assert.equal(frozen.code, 2, frozen.stdout + frozen.stderr);
    assert.match(frozen.stdout, /frozen is frozen until .*: end-of-year freeze/);
    const notAllowed = await deploy('ci-bot', 'frozen', '1.0.0', '--break-glass', 'hotfix for checkout');
    assert.equal(notAllowed.code, 2, notAllowed.stdout + notAllowed.stderr);
    assert.match(notAllowed.stdout, /ci-bot may not break glass \(allowed: erin, group:sre\)/);
    assert.equal(await container('frozen'), undefined);
  });

  it('lets a break-glass principal override the freeze, audited with the reason', async () => {
    const result = await deploy('erin', 'frozen', '1.0.0', '--break-glass', 'hotfix for checkout');
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as DeploymentStatus;
    assert.equal(status.unverifiedIdentities, true, 'the report says names were not proven');
    assert.ok((await container('frozen'))?.State.Running);
    const audit = await runCli(['audit', '--env', 'frozen', '--json'], stack.env);
    assert.equal(audit.code, 0, audit.stderr);
    const events = JSON.parse(audit.stdout) as AuditRow[];
    const override = events.find((e) => e.action === 'override');
    assert.ok(override, audit.stdout);
    assert.equal(override.outcome, 'accepted');
    assert.match(override.actor, /^erin/);
    assert.match(override.reason, /overrode the freeze \(end-of-year freeze\): hotfix for checkout/);
    assert.equal(events.filter((e) => e.action === 'request' && e.outcome === 'refused').length, 2);
    const report = await readFile(status.reportPath ?? '', 'utf8');
    assert.match(report, /Insecure development mode/);
    assert.match(report, /## Audit\n.*override accepted: erin/s);
  });

  it('refuses a kubeconfig that runs a credential program, without running it', async () => {
    const result = await runCli(
      ['deploy', '-f', kubernetesSpecFile, '--env', 'cluster', '--version', '1.0.0', '--wait'],
      as('ci-bot'),
    );
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      /runs a credential program \(exec\), which the platform policy does not allow for cluster/,
    );
    await assert.rejects(access(marker()), 'the exec plugin never ran');
  });
});
