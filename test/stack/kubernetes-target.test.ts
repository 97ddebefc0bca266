/**
 * The Kubernetes target's activities against a real control plane (apiserver, controller-manager, scheduler, kwok):
 * validation, rollback points, a release that fails its rollout and is restored, revisions, an unreachable cluster.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/activity';
import { failureKinds } from '../../domain/failures.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage, ReleaseState } from '../../domain/release.js';
import { applyRelease } from '../../activities/kubernetes/apply.js';
import { diffRelease } from '../../activities/kubernetes/diff.js';
import { kubernetesDriver } from '../../activities/kubernetes/driver.js';
import { restoreRelease, verifyRelease } from '../../activities/kubernetes/restore.js';
import { awaitRollout, type Progress } from '../../activities/kubernetes/rollout.js';
import { dryRunRelease, inspectKubernetesEnvironment } from '../../activities/kubernetes/validate.js';
import { findKeptRelease } from '../../activities/targets/index.js';
import { startKubeControlPlane, type KubeControlPlane } from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const NAMESPACE = 'shop';
const REPOSITORY = '127.0.0.1:5000/web-shop';
const ROLLOUT_TIMEOUT_MS = 60_000;

const image = (hexDigit: string): PinnedImage => {
  const digest = `sha256:${hexDigit.repeat(64)}`;
  return { reference: `${REPOSITORY}@${digest}`, digest };
};
const deploymentId = (): string => `web-shop.production.${randomUUID()}`;

/** Rejects with an ApplicationFailure of that type; returns it for further checks. */
async function failureOf(promise: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    assert.equal(error.type, type, error.message);
    return error;
  }
  assert.fail(`expected a ${type} failure`);
}

const recording = (): Progress & { beats: unknown[] } => {
  const beats: unknown[] = [];
  return {
    beats,
    beat: (details) => beats.push(details),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
};

void describe('Kubernetes target activities', { timeout: 420_000 }, () => {
  let workDir: string;
  let plane: KubeControlPlane | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let target: KubernetesTarget;
  const manifests = (name: string): string => path.join(FIXTURES, name);
  const withManifests = (name: string): KubernetesTarget => ({ ...target, manifestsDir: manifests(name) });

  before(
    async () => {
      workDir = await mkdtemp(path.join(os.tmpdir(), 'kubernetes-target-'));
      const started = Date.now();
      plane = await startKubeControlPlane(workDir, { nodes: 2 });
      console.log(`control plane ready in ${Date.now() - started} ms`);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(plane.kubeconfigPath);
      core = kc.makeApiClient(k8s.CoreV1Api);
      apps = kc.makeApiClient(k8s.AppsV1Api);
      await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
      target = {
        kind: 'kubernetes',
        service: 'web-shop',
        environment: 'production',
        kubeconfig: plane.kubeconfigPath,
        context: 'local',
        namespace: NAMESPACE,
        manifestsDir: manifests('web-shop'),
        imageRepository: REPOSITORY,
        historyLimit: 3,
        fieldManager: 'deploy-agent',
      };
    },
    { timeout: 150_000 },
  );

  after(async () => {
    await plane?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** Rollback point, apply, rollout: one successful deploy as the workflow runs it. */
  async function deploy(release: KubernetesTarget, version: string, pinned: PinnedImage) {
    const id = deploymentId();
    const point = await kubernetesDriver(release).snapshot(id);
    const applied = await applyRelease({ target: release, deploymentId: id, version, image: pinned });
    const detail = await awaitRollout(release, { timeoutMs: ROLLOUT_TIMEOUT_MS, intervalMs: 250 });
    await kubernetesDriver(release).prune();
    return { id, point, applied, detail };
  }

  void it('inspect finds nothing in the way of v1, and names a missing dependency', async () => {
    const report = await inspectKubernetesEnvironment(target, []);
    assert.deepEqual(report.problems, []);
    assert.match(report.serverVersion, /^v1\.35\.\d+$/);
    assert.equal(report.current.present, false);

    const withDependency = await inspectKubernetesEnvironment(target, ['payments']);
    assert.equal(withDependency.problems.length, 1);
    assert.match(withDependency.problems[0] ?? '', /dependency payments: no Deployment payments/);
  });

  void it('dry run passes v1 and rejects an invalid manifest, naming kind, name and field, changing nothing', async () => {
    assert.deepEqual(await dryRunRelease(target, image('a')), []);
    const problems = await dryRunRelease(withManifests('web-shop-invalid'), image('a'));
    console.log(`dry run: ${problems.join('; ')}`);
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0] ?? '', /^Deployment\/shop\/web-shop: .*containers\[0\]\.ports\[0\]\.containerPort/);
    await assert.rejects(core.readNamespacedConfigMap({ name: 'web-shop-config', namespace: NAMESPACE }));
    assert.equal((await apps.listNamespacedDeployment({ namespace: NAMESPACE })).items.length, 0);
  });

  void it('reports a ResourceQuota too small for the release', async () => {
    const namespace = 'shop-small';
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    await core.createNamespacedResourceQuota({
      namespace,
      body: { metadata: { name: 'small' }, spec: { hard: { 'requests.cpu': '150m', pods: '10' } } },
    });
    const report = await inspectKubernetesEnvironment({ ...target, namespace }, []);
    console.log(`inspect: ${report.problems.join('; ')}`);
    assert.equal(report.problems.length, 1, report.problems.join('\n'));
    assert.match(
      report.problems[0] ?? '',
      /^ResourceQuota\/shop-small\/small: requests\.cpu .* needs 200m, 150m is free/,
    );
  });

  let v1: Awaited<ReturnType<typeof deploy>>;

  void it('applies v1 and waits for its rollout; retries change nothing', async () => {
    const started = Date.now();
    v1 = await deploy(target, '1.0.0', image('a'));
    console.log(`v1 applied and rolled out in ${Date.now() - started} ms: ${v1.detail}`);
    assert.equal(v1.point.present, false);
    assert.match(v1.detail, /Deployment\/shop\/web-shop: .*available 2\/2/);
    assert.equal(v1.applied.imageDigest, image('a').digest);
    assert.equal(v1.applied.deploymentId, v1.id);

    // A crash midway leaves some objects unapplied; the retry with the same deployment converges on the release.
    await core.deleteNamespacedService({ name: 'web-shop', namespace: NAMESPACE });
    await core.deleteNamespacedSecret({ name: 'web-shop-secret', namespace: NAMESPACE });
    const again = await applyRelease({ target, deploymentId: v1.id, version: '1.0.0', image: image('a') });
    assert.equal(again.configHash, v1.applied.configHash);
    await core.readNamespacedService({ name: 'web-shop', namespace: NAMESPACE });
    assert.deepEqual(await kubernetesDriver(target).snapshot(v1.id), v1.point);

    const progress = recording();
    await awaitRollout(target, { timeoutMs: 5_000, progress });
    const deployment = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE });
    assert.equal(deployment.metadata?.labels?.['deploy-agent.dev/service'], 'web-shop');
    assert.equal(deployment.metadata?.annotations?.['deploy-agent.dev/deployment-id'], v1.id);
  });

  let v1Point: ReleaseState;

  void it('restores v1 after v2 fails its rollout: old ReplicaSet serves, config reverted, additions gone', async () => {
    const replicaSets = await apps.listNamespacedReplicaSet({ namespace: NAMESPACE });
    const v1ReplicaSet = replicaSets.items.find((rs) => (rs.spec?.replicas ?? 0) > 0)?.metadata?.name;
    assert.ok(v1ReplicaSet);

    const v2 = withManifests('web-shop-v2');
    const id = deploymentId();
    v1Point = await kubernetesDriver(v2).snapshot(id);
    assert.equal(v1Point.present, true);
    assert.equal(v1Point.deploymentId, v1.id);
    assert.equal(v1Point.configHash, v1.applied.configHash);
    assert.equal(v1Point.running, true);
    assert.ok(!JSON.stringify(v1Point).includes('fixture-key'), 'no Secret value leaves the cluster');
    const stored = await core.readNamespacedSecret({ name: v1Point.handle ?? '', namespace: NAMESPACE });
    assert.equal(stored.type, 'deploy-agent.dev/release-snapshot');
    assert.equal(stored.metadata?.labels?.['deploy-agent.dev/revision'], '2');
    assert.equal(stored.metadata?.labels?.['deploy-agent.dev/taken-by'], id);

    const applied = await applyRelease({ target: v2, deploymentId: id, version: '2.0.0', image: image('b') });
    const early = await failureOf(awaitRollout(v2, { timeoutMs: 1_500, intervalMs: 250 }), failureKinds.unhealthy.type);
    assert.match(early.message, /^rollout did not finish within 1500 ms: Deployment\/shop\/web-shop: /);
    const started = Date.now();
    const progress = recording();
    const failure = await failureOf(
      awaitRollout(v2, { timeoutMs: ROLLOUT_TIMEOUT_MS, progress }),
      failureKinds.unhealthy.type,
    );
    console.log(`v2 failed after ${Date.now() - started} ms: ${failure.message}`);
    assert.equal(failure.nonRetryable, true);
    assert.match(failure.message, /Deployment\/shop\/web-shop failed to roll out: ProgressDeadlineExceeded/);
    assert.match(failure.message, /pods not ready: web-shop-/);
    assert.ok(progress.beats.length > 0, 'heartbeats while waiting');

    const diff = await diffRelease(v2, v1Point, applied);
    assert.deepEqual(diff.added, ['ConfigMap/web-shop-features']);
    assert.deepEqual(diff.removed, []);
    const changedConfig = diff.changed.find((c) => c.object === 'ConfigMap/web-shop-config');
    assert.ok(changedConfig?.fields.includes('data.LOG_LEVEL'), JSON.stringify(diff));
    assert.ok(diff.changed.some((c) => c.object === 'Deployment/web-shop'));
    const changedSecret = diff.changed.find((c) => c.object === 'Secret/web-shop-secret');
    assert.ok(changedSecret?.fields.includes('data'), 'a Secret is reported by top-level field, not by key');
    assert.ok(!(changedSecret?.fields ?? []).some((f) => f.includes('API_KEY')));

    const restoreStarted = Date.now();
    const restored = await restoreRelease({ target: v2, to: v1Point });
    console.log(`restore took ${Date.now() - restoreStarted} ms`);
    assert.equal(restored.configHash, v1Point.configHash);
    assert.equal(restored.imageDigest, image('a').digest);
    assert.equal(restored.running, true);
    const rs = await apps.readNamespacedReplicaSet({ name: v1ReplicaSet, namespace: NAMESPACE });
    assert.equal(rs.status?.readyReplicas, 2);
    const hash = rs.metadata?.labels?.['pod-template-hash'] ?? '';
    const pods = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: `pod-template-hash=${hash}` });
    const ready = pods.items.filter((p) =>
      p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    assert.equal(ready.length, 2);
    const config = await core.readNamespacedConfigMap({ name: 'web-shop-config', namespace: NAMESPACE });
    assert.equal(config.data?.LOG_LEVEL, 'info');
    await assert.rejects(core.readNamespacedConfigMap({ name: 'web-shop-features', namespace: NAMESPACE }));
    const secret = await core.readNamespacedSecret({ name: 'web-shop-secret', namespace: NAMESPACE });
    assert.equal(Buffer.from(secret.data?.API_KEY ?? '', 'base64').toString(), 'fixture-key-not-a-secret');
    const deployment = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE });
    assert.equal(deployment.spec?.template.metadata?.annotations?.['deploy-agent.dev/simulate'], undefined);

    const report = await verifyRelease(target, v1Point);
    assert.equal(report.consistent, true, JSON.stringify(report.checks.filter((c) => !c.equal)));
    assert.ok(report.checks.some((c) => c.field === 'ConfigMap/web-shop-features' && c.actual === 'absent'));
    assert.ok(report.checks.some((c) => c.field === 'Secret/web-shop-secret' && c.equal));

    await restoreRelease({ target: v2, to: v1Point });
    assert.equal((await verifyRelease(target, v1Point)).consistent, true, 'a second restore changes nothing');
  });

  void it('reaches revision N-2 after three applies, and keeps only historyLimit revisions', async () => {
    const v1b = await deploy(target, '1.1.0', image('c'));
    const v1c = await deploy(target, '1.2.0', image('d'));
    assert.equal(v1c.applied.imageDigest, image('d').digest);

    const previous = await findKeptRelease(target);
    assert.equal(previous.deploymentId, v1b.id);
    assert.equal(previous.imageDigest, image('c').digest);
    const twoBack = await findKeptRelease(target, v1.id);
    assert.equal(twoBack.imageDigest, image('a').digest);
    await failureOf(findKeptRelease(target, deploymentId()), failureKinds.invalid.type);

    const revisions = await core.listNamespacedSecret({
      namespace: NAMESPACE,
      labelSelector: 'deploy-agent.dev/snapshot-service=web-shop',
    });
    assert.deepEqual(revisions.items.map((s) => s.metadata?.labels?.['deploy-agent.dev/revision']).sort(), [
      '2',
      '3',
      '4',
    ]);

    // A manual rollback: a rollback point of what runs, then the release two back.
    await kubernetesDriver(target).snapshot(deploymentId());
    await restoreRelease({ target, to: twoBack });
    const report = await verifyRelease(target, twoBack);
    assert.equal(report.consistent, true, JSON.stringify(report.checks.filter((c) => !c.equal)));
    const deployment = await apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE });
    assert.equal(deployment.spec?.template.spec?.containers[0]?.image, image('a').reference);
  });

  void it('restoring "nothing deployed" removes everything the service labelled', async () => {
    assert.equal(v1.point.present, false);
    await restoreRelease({ target, to: v1.point });
    const report = await verifyRelease(target, v1.point);
    assert.equal(report.consistent, true, JSON.stringify(report.checks.filter((c) => !c.equal)));
    await assert.rejects(apps.readNamespacedDeployment({ name: 'web-shop', namespace: NAMESPACE }));
    await assert.rejects(core.readNamespacedSecret({ name: 'web-shop-secret', namespace: NAMESPACE }));
  });

  void it('an unreachable apiserver is TargetUnreachable', async () => {
    assert.ok(plane);
    const closed = `https://127.0.0.1:${await freePort()}`;
    const kubeconfig = path.join(workDir, 'unreachable.kubeconfig');
    const text = await readFile(plane.kubeconfigPath, 'utf8');
    await writeFile(kubeconfig, text.replace(plane.server, closed), { mode: 0o600 });
    const unreachable = { ...target, kubeconfig };
    const failure = await failureOf(inspectKubernetesEnvironment(unreachable, []), failureKinds.unreachable.type);
    assert.match(failure.message, /Kubernetes API https:\/\/127\.0\.0\.1:\d+ is unreachable/);
    await failureOf(kubernetesDriver(unreachable).snapshot(deploymentId()), failureKinds.unreachable.type);
    await failureOf(dryRunRelease(unreachable, image('a')), failureKinds.unreachable.type);
  });
});
