/**
 * Approvals bound to content, end to end: the real Docker engine and registry, a real Kubernetes control plane, the
 * Temporal dev server, and the CLI as approvers and CI run it. Approvers see the plan before they vote, a vote
 * approves the content hash it was shown, and apply refuses content that changed after the vote.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import Docker from 'dockerode';
import { type DeploymentStatus, FINAL_STATES } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { startKubeControlPlane, workerKubeconfig } from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../support/spec-fixtures.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const NAMESPACE = 'bound';
const approval = { approval: { required: 1, approvers: ['alice', 'bob'], deadline: '1h' } };

describe('approvals bound to content, end to end', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let plane: Awaited<ReturnType<typeof startKubeControlPlane>>;
  let temporal: DevStack;
  let engine: Docker;
  let apps: k8s.AppsV1Api;
  let core: k8s.CoreV1Api;
  let env: Record<string, string>;
  let repository: string;
  const digests: Record<string, string> = {};
  const as = (user: string) => ({ ...env, DEPLOY_AGENT_USER: user });

  async function status(id: string): Promise<{ code: number; status: DeploymentStatus }> {
    const result = await runCli(['status', id, '--json'], env);
    return { code: result.code, status: JSON.parse(result.stdout) as DeploymentStatus };
  }

  async function until(id: string, done: (s: DeploymentStatus) => boolean): Promise<DeploymentStatus> {
    for (let attempt = 0; attempt < 240; attempt++) {
      const { status: current } = await status(id);
      if (done(current)) return current;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`deployment ${id} did not get there`);
  }
  const awaitingApproval = (id: string) => until(id, (s) => s.state === 'awaiting-approval');
  const ended = (id: string) => until(id, (s) => FINAL_STATES.has(s.state));

  async function start(spec: string, environment: string, version: string): Promise<string> {
    const started = await runCli(['deploy', '-f', spec, '--env', environment, '--version', version], as('ci-bot'));
    assert.equal(started.code, 0, started.stdout + started.stderr);
    return deploymentIdIn(started.stdout);
  }

  /** Deploys and approves through the CLI; returns the approval's output and how the deployment ended. */
  async function deployApproved(spec: string, environment: string, version: string) {
    const id = await start(spec, environment, version);
    const waiting = await awaitingApproval(id);
    const approved = await runCli(['approve', id], as('alice'));
    assert.equal(approved.code, 0, approved.stdout + approved.stderr);
    return { id, waiting, approved, final: await ended(id) };
  }

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-binding-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    repository = `${docker.registry.address}/web-shop`;
    for (const version of ['1.0.0', '1.1.0'])
      digests[version] = (await buildServiceImage(docker, { repository, version, healthy: true })).digest;
    plane = await startKubeControlPlane(join(workDir, 'kube'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    const worker = await workerKubeconfig(plane, { namespaces: [NAMESPACE], file: join(workDir, 'worker.kubeconfig') });
    const { policyFile } = await writeTestFiles(workDir, {
      policy: testPolicy([workDir], {
        docker: dockerEnvironment(docker.engine.dockerHost, { 'web-shop': await freePort() }, approval),
        kube: { kubernetes: { kubeconfig: worker.kubeconfigPath, namespace: NAMESPACE }, ...approval },
      }),
    });
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
  });

  after(async () => {
    await temporal?.stop();
    await plane?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('asks approval for a change of configuration alone, showing only that setting, and binds the vote to it', async () => {
    const spec = join(workDir, 'docker-deploy.yaml');
    await writeFile(spec, specYaml({ repository }, 'container:\n  env:\n    LOG_LEVEL: info\n'));
    const first = await deployApproved(spec, 'docker', '1.0.0');
    assert.equal(first.final.state, 'succeeded', JSON.stringify(first.final.errors));
    assert.equal(first.waiting.plan?.imageChanged, true, 'a first deployment changes the image');

    // The same version, one setting changed: still a change, still approved before it goes live.
    await writeFile(spec, specYaml({ repository }, 'container:\n  env:\n    LOG_LEVEL: debug\n'));
    const id = await start(spec, 'docker', '1.0.0');
    const waiting = await awaitingApproval(id);
    const plan = waiting.plan;
    assert.ok(plan, 'the status holds the plan while the deployment waits');
    assert.equal(plan.imageChanged, false);
    assert.deepEqual(plan.configChanges, ['env.LOG_LEVEL']);
    assert.equal(plan.unchanged, false);
    const human = await runCli(['status', id], env);
    assert.match(human.stdout, new RegExp(`Content hash: ${plan.contentHash}`));
    assert.match(human.stdout, /Image changed: no\n- Settings changed: env\.LOG_LEVEL\n/);
    assert.doesNotMatch(human.stdout, /debug/, 'names only, never values');
    const live = await engine.getContainer('web-shop_docker').inspect();
    assert.ok(live.Config.Env?.includes('LOG_LEVEL=info'), 'nothing applied before the vote');

    const pinned = await runCli(['approve', id, '--content-hash', `sha256:${'0'.repeat(64)}`], as('bob'));
    assert.equal(pinned.code, 2, pinned.stdout + pinned.stderr);
    assert.match(pinned.stderr, /the vote approves content sha256:0{64}, but the validated content is sha256:/);
    const approved = await runCli(['approve', id], as('alice'));
    assert.equal(approved.code, 0, approved.stdout + approved.stderr);
    assert.match(approved.stdout, /Plan of this deployment \(what the vote covers\):\n- Content hash: sha256:/);
    assert.match(approved.stdout, new RegExp(`approved ${id.replaceAll('.', '\\.')} .*content ${plan.contentHash}`));
    const final = await ended(id);
    assert.equal(final.state, 'succeeded', JSON.stringify(final.errors));
    assert.deepEqual(
      final.approval?.refused.map((r) => r.approver),
      ['bob'],
      'the refused vote is recorded',
    );
    assert.ok((await engine.getContainer('web-shop_docker').inspect()).Config.Env?.includes('LOG_LEVEL=debug'));
  });

  it('shows the object diff before the vote and refuses at apply manifests changed after it, changing nothing', async () => {
    const dir = join(workDir, 'manifests');
    await cp(join(FIXTURES, 'web-shop'), dir, { recursive: true });
    for (const file of await readdir(dir)) {
      const text = await readFile(join(dir, file), 'utf8');
      await writeFile(join(dir, file), text.replaceAll('127.0.0.1:5000', docker.registry.address));
    }
    const spec = join(workDir, 'kube-deploy.yaml');
    await writeFile(
      spec,
      `service: web-shop\ntarget: kubernetes\nimage:\n  repository: ${repository}\nrelease:\n  manifests: ${dir}\n`,
    );
    const first = await deployApproved(spec, 'kube', '1.0.0');
    assert.equal(first.final.state, 'succeeded', JSON.stringify(first.final.errors));
    assert.deepEqual(first.waiting.plan?.objectChanges?.added.sort(), [
      'ConfigMap/web-shop-config',
      'Deployment/web-shop',
      'Secret/web-shop-secret',
      'Service/web-shop',
    ]);
    assert.match(first.approved.stdout, /- add Deployment\/web-shop/);

    const id = await start(spec, 'kube', '1.1.0');
    const waiting = await awaitingApproval(id);
    assert.equal(waiting.plan?.imageChanged, true);
    assert.deepEqual(waiting.plan?.objectChanges?.changed, [
      { object: 'Deployment/web-shop', fields: ['spec.template.spec.containers[0].image'] },
    ]);
    assert.equal(waiting.plan?.objectChanges?.unchanged, 3);
    const human = await runCli(['status', id], env);
    assert.match(human.stdout, /- change Deployment\/web-shop: spec\.template\.spec\.containers\[0\]\.image/);

    // After validation, before apply: the manifests on disk are not what the approver saw.
    const config = join(dir, 'config.yaml');
    await writeFile(config, (await readFile(config, 'utf8')).replace('LOG_LEVEL: info', 'LOG_LEVEL: trace'));
    const approved = await runCli(['approve', id], as('bob'));
    assert.equal(approved.code, 0, approved.stdout + approved.stderr);
    const final = await ended(id);
    assert.equal(final.state, 'invalid', JSON.stringify(final, null, 2));
    assert.match(final.errors.join('\n'), /release manifests in .* changed after validation and approval/);
    assert.equal(final.rollback?.consistency?.consistent, true, 'the target is proven as it was');
    const result = await runCli(['status', id], env);
    assert.equal(result.code, 2, 'invalid: exit 2');
    const deployment = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE });
    assert.equal(deployment.spec?.template.spec?.containers[0]?.image, `${repository}@${digests['1.0.0']}`);
    const live = await core.readNamespacedConfigMap({ name: 'web-shop-config', namespace: NAMESPACE });
    assert.equal(live.data?.LOG_LEVEL, 'info', 'the changed manifest was never applied');
  });
});
