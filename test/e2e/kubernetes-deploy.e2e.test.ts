/**
 * End to end on a real Kubernetes control plane (kwok nodes), the Temporal dev server, a registry holding the images,
 * and the CLI run as CI runs it. The worker reaches the cluster as its own ServiceAccount, with exactly the rights
 * examples/kubernetes/worker-rbac.yaml grants; the test sets up and inspects the cluster as admin.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { startKubeControlPlane, workerKubeconfig } from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';
import { runCli } from '../support/cli.js';
import { startTestTemporal, testPolicy, writeTestFiles } from '../support/spec-fixtures.js';
import { testKeysEnv } from '../support/keys.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const NAMESPACE = 'shop';

describe('deploys to Kubernetes end to end', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let plane: Awaited<ReturnType<typeof startKubeControlPlane>>;
  let temporal: DevStack;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let env: Record<string, string>;
  const digests: Record<string, string> = {};

  /** A spec per release: the release is a directory of manifests, copied with this run's registry in it. */
  async function specFor(release: string, { extraObjects = 0 } = {}): Promise<string> {
    const name = extraObjects ? `${release}-${extraObjects}` : release;
    const dir = join(workDir, `release-${name}`);
    await cp(join(FIXTURES, release), dir, { recursive: true });
    if (extraObjects)
      await writeFile(
        join(dir, 'many.yaml'),
        Array.from(
          { length: extraObjects },
          (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-shop-extra-${i}\ndata:\n  index: "${i}"\n`,
        ).join('---\n'),
      );
    for (const file of await readdir(dir)) {
      const text = await readFile(join(dir, file), 'utf8');
      await writeFile(join(dir, file), text.replaceAll('127.0.0.1:5000', docker.registry.address));
    }
    const spec = join(workDir, `deploy-${name}.yaml`);
    await writeFile(
      spec,
      `service: web-shop
target: kubernetes
image:
  repository: ${docker.registry.address}/web-shop
release:
  manifests: ${dir}
healthCheck:
  healthyWithin: 60s
`,
    );
    return spec;
  }

  const deploy = async (release: string, version: string, environment = 'staging') =>
    runCli(
      ['deploy', '-f', await specFor(release), '--env', environment, '--version', version, '--wait', '--json'],
      env,
    );

  const liveImage = async () =>
    (await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE })).spec?.template.spec?.containers[0]
      ?.image;

  before(async () => {
    // The in-process worker signs and verifies revisions with the test process's key ring.
    testKeysEnv();
    workDir = await mkdtemp(join(tmpdir(), 'deploy-kube-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    for (const version of ['1.0.0', '1.1.0', '2.0.0'])
      digests[version] = (
        await buildServiceImage(docker, { repository: `${docker.registry.address}/web-shop`, version, healthy: true })
      ).digest;
    plane = await startKubeControlPlane(join(workDir, 'kube'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    const namespaces = [NAMESPACE, 'tight', 'solo', 'big'];
    for (const name of namespaces) await core.createNamespace({ body: { metadata: { name } } });
    await core.createNamespacedResourceQuota({
      namespace: 'tight',
      body: { metadata: { name: 'small' }, spec: { hard: { 'requests.cpu': '150m' } } },
    });
    const worker = await workerKubeconfig(plane, { namespaces, file: join(workDir, 'worker.kubeconfig') });
    const text = await readFile(worker.kubeconfigPath, 'utf8');
    // The same cluster through a second file: the policy cannot tell that two environments share a namespace.
    const shadow = join(workDir, 'shadow.kubeconfig');
    await writeFile(shadow, text, { mode: 0o600 });
    const unreachable = join(workDir, 'unreachable.kubeconfig');
    await writeFile(unreachable, text.replace(/https:\/\/127\.0\.0\.1:\d+/, `https://127.0.0.1:${await freePort()}`), {
      mode: 0o600,
    });
    const cluster = (namespace: string, more: Record<string, unknown> = {}, kubeconfig = worker.kubeconfigPath) => ({
      kubernetes: { kubeconfig, namespace },
      ...more,
    });
    const { policyFile } = await writeTestFiles(workDir, {
      policy: testPolicy([workDir], {
        staging: cluster(NAMESPACE, { historyLimit: 5 }),
        tight: cluster('tight'),
        unreachable: cluster('elsewhere', {}, unreachable),
        shadow: cluster(NAMESPACE, {}, shadow),
        solo: cluster('solo', { historyLimit: 1 }),
        big: cluster('big'),
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

  it('validate reads the release manifests offline: a broken one exits 2 naming the file', async () => {
    const spec = await specFor('web-shop');
    const manifests = join(workDir, 'release-web-shop');
    const valid = await runCli(['validate', '-f', spec], env);
    assert.equal(valid.code, 0, valid.stdout + valid.stderr);
    assert.ok(valid.stdout.includes(`: valid; web-shop via Kubernetes, 4 objects in ${manifests}\n`), valid.stdout);
    await writeFile(join(manifests, 'broken.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n');
    const broken = await runCli(['validate', '-f', spec], env);
    assert.equal(broken.code, 2, broken.stdout + broken.stderr);
    assert.match(broken.stderr, /release\.manifests: broken\.yaml document 1: /);
    await rm(join(manifests, 'broken.yaml'));
  });

  it('rolls out a multi-object release and reports it (exit 0)', async () => {
    const result = await deploy('web-shop', '1.0.0');
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as { state: string; checks: { check: string; passed: boolean }[] };
    assert.equal(status.state, 'succeeded');
    assert.ok(status.checks.some((c) => c.check === 'dry run on the target' && c.passed));
    assert.equal(await liveImage(), `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    const again = await deploy('web-shop', '1.1.0');
    assert.equal(again.code, 0, again.stdout + again.stderr);
  });

  it('rolls back a release whose pods never get ready (exit 1): old ReplicaSet, ConfigMap and Secret back', async () => {
    const result = await deploy('web-shop-v2', '2.0.0');
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as {
      state: string;
      rollback: { consistency: { consistent: boolean } };
      objectChanges: { added: string[]; changed: { object: string; fields: string[] }[] };
    };
    assert.equal(status.state, 'rolled-back');
    assert.deepEqual(status.objectChanges.added, ['ConfigMap/web-shop-features']);
    const config = status.objectChanges.changed.find((c) => c.object === 'ConfigMap/web-shop-config');
    assert.deepEqual(config?.fields, ['data.LOG_LEVEL']);
    assert.equal(status.rollback.consistency.consistent, true);
    assert.equal(await liveImage(), `${docker.registry.address}/web-shop@${digests['1.1.0']}`);
    const restored = await core.readNamespacedConfigMap({ name: 'web-shop-config', namespace: NAMESPACE });
    assert.equal(restored.data?.LOG_LEVEL, 'info');
    await assert.rejects(core.readNamespacedConfigMap({ name: 'web-shop-features', namespace: NAMESPACE }));
    const deployment = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE });
    assert.equal(deployment.status?.readyReplicas, 2);
  });

  it('rolls back to revision N-2 by deployment id', async () => {
    const list = await runCli(['list', '--env', 'staging', '--json'], env);
    const rows = JSON.parse(list.stdout) as { deploymentId: string; version?: string; status?: string }[];
    const first = rows.find((r) => r.version === '1.0.0' && r.status === 'succeeded');
    assert.ok(first, list.stdout);
    const spec = await specFor('web-shop');
    const result = await runCli(['rollback', '-f', spec, '--env', 'staging', '--to', first.deploymentId, '--wait'], {
      ...env,
      DEPLOY_AGENT_USER: 'oncall',
    });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(await liveImage(), `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
  });

  it('rejects an invalid manifest in the dry run and a release the quota cannot fit, before changing anything', async () => {
    const invalid = await deploy('web-shop-invalid', '1.1.0');
    assert.equal(invalid.code, 2, invalid.stdout + invalid.stderr);
    assert.match(
      invalid.stdout,
      /Deployment\/shop\/web-shop: spec\.template\.spec\.containers\[0\]\.ports\[0\]\.containerPort/,
    );
    assert.equal(await liveImage(), `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    const tight = await deploy('web-shop', '1.1.0', 'tight');
    assert.equal(tight.code, 2, tight.stdout + tight.stderr);
    assert.match(tight.stdout, /ResourceQuota\/tight\/small: requests\.cpu would be exceeded/);
    await assert.rejects(apps.readNamespacedDeployment({ name: 'web-shop', namespace: 'tight' }));
  });

  it('exits 4 when the API server is unreachable, with nothing changed', async () => {
    const result = await deploy('web-shop', '1.1.0', 'unreachable');
    assert.equal(result.code, 4, result.stdout + result.stderr);
    assert.equal((JSON.parse(result.stdout) as { state: string }).state, 'unreachable');
  });

  it('refuses a second environment pointing at the objects of another (exit 2), changing nothing', async () => {
    const before = await liveImage();
    const spec = await specFor('web-shop');
    const result = await runCli(['deploy', '-f', spec, '--env', 'shadow', '--version', '2.0.0', '--wait'], env);
    assert.equal(result.code, 2, result.stdout + result.stderr);
    assert.match(result.stdout, /Deployment\/shop\/web-shop belongs to service web-shop in environment staging/);
    assert.equal(await liveImage(), before);
  });

  it('rolls back to the oldest revision kept with historyLimit 1: the revision being restored is not pruned', async () => {
    const spec = await specFor('web-shop');
    const deployed: string[] = [];
    for (const version of ['1.0.0', '1.1.0']) {
      const result = await runCli(
        ['deploy', '-f', spec, '--env', 'solo', '--version', version, '--wait', '--json'],
        env,
      );
      assert.equal(result.code, 0, result.stdout + result.stderr);
      deployed.push((JSON.parse(result.stdout) as { deploymentId: string }).deploymentId);
    }
    const result = await runCli(['rollback', '-f', spec, '--env', 'solo', '--to', deployed[0] ?? '', '--wait'], env);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const live = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: 'solo' });
    assert.equal(
      live.spec?.template.spec?.containers[0]?.image,
      `${docker.registry.address}/web-shop@${digests['1.0.0']}`,
    );
  });

  it('deploys a release of 200 objects, every one of them applied', async () => {
    const spec = await specFor('web-shop', { extraObjects: 196 });
    const result = await runCli(['deploy', '-f', spec, '--env', 'big', '--version', '1.0.0', '--wait', '--json'], env);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const configMaps = await core.listNamespacedConfigMap({ namespace: 'big' });
    const extra = configMaps.items.filter((c) => c.metadata?.name?.startsWith('web-shop-extra-'));
    assert.equal(extra.length, 196);
  });

  it('shows rollout progress live while --wait follows a deploy', async () => {
    const spec = await specFor('web-shop-v2');
    const result = await runCli(['deploy', '-f', spec, '--env', 'staging', '--version', '2.0.0', '--wait'], env);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /awaitReady: Deployment\/shop\/web-shop: generation \d+\/\d+, updated \d\/2, ready/);
  });
});
