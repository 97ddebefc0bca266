/**
 * The Kubernetes target's activities against a real control plane (apiserver, controller-manager, scheduler, kwok):
 * validation, rollback points, a release that fails its rollout and is restored, revisions, a release whose workload
 * an autoscaler scales, an unreachable cluster. The activities run as the worker's ServiceAccount with the Role of
 * examples/kubernetes/worker-rbac.yaml, so a call the example does not grant fails here; set-up, fault injection and
 * assertions use the admin kubeconfig.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/activity';
import { failureKindOf, failureKinds, messageOf } from '../../domain/failures.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { ConsistencyReport, PinnedImage, ReleaseState } from '../../domain/release.js';
import { applyRelease } from '../../activities/kubernetes/apply.js';
import { connect, serverSideApply } from '../../activities/kubernetes/client.js';
import { diffRelease } from '../../activities/kubernetes/diff.js';
import { kubernetesDriver } from '../../activities/kubernetes/driver.js';
import { byApplyOrder, refOf } from '../../activities/kubernetes/manifests.js';
import {
  describeRelease,
  hashObject,
  liveRelease,
  managedFields,
  releaseHash,
  sha256,
} from '../../activities/kubernetes/objects.js';
import { restoreRelease, verifyRelease } from '../../activities/kubernetes/restore.js';
import { awaitRollout, type Progress } from '../../activities/kubernetes/rollout.js';
import { dryRunRelease, inspectKubernetesEnvironment } from '../../activities/kubernetes/validate.js';
import { findKeptRelease } from '../../activities/targets/index.js';
import {
  startKubeControlPlane,
  workerKubeconfig,
  type KubeControlPlane,
  type WorkerKubeconfig,
} from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';
import { signRevision } from '../../activities/kubernetes/revision-integrity.js';
import { keyRingFromEnv } from '../../keys/key-ring.js';
import { testKeysEnv } from '../support/keys.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const NAMESPACE = 'shop';
const QUOTA_NAMESPACE = 'shop-small';
const AUTOSCALED_NAMESPACE = 'shop-autoscaled';
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
  let worker: WorkerKubeconfig;
  /** What the worker is given: its own kubeconfig. */
  let target: KubernetesTarget;
  /** The same environment through the admin kubeconfig, for what others do to the release behind the worker's back. */
  let admin: KubernetesTarget;
  const manifests = (name: string): string => path.join(FIXTURES, name);
  const withManifests = (name: string): KubernetesTarget => ({ ...target, manifestsDir: manifests(name) });

  before(
    async () => {
      testKeysEnv();
      workDir = await mkdtemp(path.join(os.tmpdir(), 'kubernetes-target-'));
      const started = Date.now();
      plane = await startKubeControlPlane(workDir, { nodes: 2 });
      console.log(`control plane ready in ${Date.now() - started} ms`);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(plane.kubeconfigPath);
      core = kc.makeApiClient(k8s.CoreV1Api);
      apps = kc.makeApiClient(k8s.AppsV1Api);
      for (const name of [NAMESPACE, QUOTA_NAMESPACE, AUTOSCALED_NAMESPACE])
        await core.createNamespace({ body: { metadata: { name } } });
      worker = await workerKubeconfig(plane, {
        namespaces: [NAMESPACE, QUOTA_NAMESPACE, AUTOSCALED_NAMESPACE],
        file: path.join(workDir, 'worker.kubeconfig'),
      });
      target = {
        kind: 'kubernetes',
        service: 'web-shop',
        environment: 'production',
        kubeconfig: worker.kubeconfigPath,
        context: 'local',
        namespace: NAMESPACE,
        manifestsDir: manifests('web-shop'),
        imageRepository: REPOSITORY,
        historyLimit: 3,
        fieldManager: 'deploy-agent',
      };
      admin = { ...target, kubeconfig: plane.kubeconfigPath };
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
    const namespace = QUOTA_NAMESPACE;
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

    // Another manager adds a field of its own: not the release's, so still consistent. Changing one the restore
    // wrote is drift, named by its object.
    const other = (data: Record<string, string>, annotations: Record<string, string> = {}) =>
      serverSideApply(
        connect(admin),
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'web-shop-config', namespace: NAMESPACE, annotations },
          data,
        },
        { fieldManager: 'someone-else' },
      );
    await other({}, { 'example.com/audited': 'yes' });
    assert.equal((await verifyRelease(target, v1Point)).consistent, true, 'a field added by another manager');
    await other({ LOG_LEVEL: 'trace' });
    const drifted = await verifyRelease(target, v1Point);
    assert.equal(drifted.consistent, false);
    assert.deepEqual(
      drifted.checks.filter((c) => !c.equal).map((c) => c.field),
      ['configHash', 'ConfigMap/web-shop-config'],
    );
    await restoreRelease({ target: v2, to: v1Point });
    assert.equal((await verifyRelease(target, v1Point)).consistent, true, 'restored again');
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

  void it("leaves replicas to the release's autoscaler and still finds configuration left behind", async () => {
    const namespace = AUTOSCALED_NAMESPACE;
    const v1Target: KubernetesTarget = { ...withManifests('web-shop-autoscaled'), namespace };
    const v2Target: KubernetesTarget = { ...withManifests('web-shop-autoscaled-v2'), namespace };
    // Others' changes and the revision a previous version stored are made as admin; the worker only deploys.
    const cluster = connect({ ...v1Target, kubeconfig: admin.kubeconfig });
    const name = 'web-shop';
    // What an HPA controller does: write the count through the scale subresource, under a field manager of its own.
    // The scale carries the Deployment's resourceVersion, which the deployment controller's status updates move: a
    // conflict means reading it again, as the HPA controller does.
    const autoscale = async (replicas: number): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        const scale = await apps.readNamespacedDeploymentScale({ name, namespace });
        try {
          await apps.replaceNamespacedDeploymentScale({
            name,
            namespace,
            fieldManager: 'horizontal-pod-autoscaler',
            body: { ...scale, spec: { replicas } },
          });
          return;
        } catch (error) {
          if (!(error instanceof k8s.ApiException && error.code === 409) || attempt >= 5) throw error;
        }
      }
    };
    const replicas = async () => (await apps.readNamespacedDeployment({ name, namespace })).spec?.replicas;
    const rolledOut = () => awaitRollout(v1Target, { timeoutMs: ROLLOUT_TIMEOUT_MS, intervalMs: 250 });
    const failing = (report: ConsistencyReport): string[] => report.checks.filter((c) => !c.equal).map((c) => c.field);
    const consistent = async (point: ReleaseState): Promise<ConsistencyReport> => {
      const report = await verifyRelease(v1Target, point);
      assert.equal(report.consistent, true, JSON.stringify(report.checks.filter((c) => !c.equal)));
      return report;
    };
    /** Someone else's change, left behind: server-side apply under another manager, forced. */
    const tamper = (kind: string, apiVersion: string, objectName: string, fields: Record<string, unknown>) =>
      serverSideApply(
        cluster,
        { apiVersion, kind, metadata: { name: objectName, namespace }, ...fields },
        { fieldManager: 'someone-else' },
      );

    await deploy(v1Target, '1.0.0', image('a'));
    assert.equal(await replicas(), 2);
    // Deployed again before the autoscaler ever scaled: the count the first deploy applied is held by this field
    // manager alone. Leaving it out must not reset it to the default of one replica: it is handed over.
    await deploy(v1Target, '1.0.0', image('a'));
    assert.equal(await replicas(), 2, 'the count is handed over, not dropped');
    await autoscale(3);
    await rolledOut();

    // A failed release: a deploy leaves the replica count to the autoscaler; the autoscaler then sets another one.
    const id = deploymentId();
    const point = await kubernetesDriver(v2Target).snapshot(id);
    assert.equal(point.running, true);
    await applyRelease({ target: v2Target, deploymentId: id, version: '2.0.0', image: image('b') });
    assert.equal(await replicas(), 3, 'a deploy does not take the replica count back from the autoscaler');
    await failureOf(
      awaitRollout(v2Target, { timeoutMs: ROLLOUT_TIMEOUT_MS, intervalMs: 250 }),
      failureKinds.unhealthy.type,
    );
    await autoscale(4);
    const restored = await restoreRelease({ target: v2Target, to: point });
    assert.equal(restored.configHash, point.configHash);
    assert.equal(await replicas(), 4, 'the autoscaler keeps the replica count it set');
    const hpa = await cluster.request<{ spec: { maxReplicas: number } }>(
      'GET',
      `/apis/autoscaling/v2/namespaces/${namespace}/horizontalpodautoscalers/${name}`,
    );
    assert.equal(hpa.spec.maxReplicas, 6, 'the autoscaler itself is restored');
    const report = await consistent(point);
    for (const field of ['Deployment/web-shop', 'HorizontalPodAutoscaler/web-shop', 'ConfigMap/web-shop-config'])
      assert.ok(
        report.checks.some((c) => c.field === field && c.equal),
        field,
      );

    // The autoscaler moves again: readiness may lag behind for a moment, and only readiness says so.
    await autoscale(5);
    const scaling = await verifyRelease(v1Target, point);
    assert.deepEqual(
      failing(scaling).filter((field) => field !== 'running'),
      [],
    );
    const readiness = scaling.checks.find((c) => c.field === 'running' && !c.equal);
    if (readiness) assert.match(readiness.actual, /^false \(Deployment\/web-shop: .*\/5/);
    await rolledOut();
    await consistent(point);

    // Configuration left behind is still found, and named.
    await tamper('ConfigMap', 'v1', 'web-shop-config', { data: { LOG_LEVEL: 'debug' } });
    const drifted = await verifyRelease(v1Target, point);
    assert.equal(drifted.consistent, false);
    assert.deepEqual(failing(drifted).sort(), ['ConfigMap/web-shop-config', 'configHash']);
    await tamper('Deployment', 'apps/v1', name, {
      spec: { template: { spec: { containers: [{ name: 'web', image: image('e').reference }] } } },
    });
    const moved = failing(await verifyRelease(v1Target, point));
    for (const field of ['ConfigMap/web-shop-config', 'Deployment/web-shop', 'imageDigest', 'configHash'])
      assert.ok(moved.includes(field), `${field} in ${moved.join(', ')}`);
    await restoreRelease({ target: v2Target, to: point });
    assert.equal(await replicas(), 5);
    await consistent(point);

    // Neither a deploy nor its restore takes the replica count back from the autoscaler.
    const again = deploymentId();
    const point2 = await kubernetesDriver(v2Target).snapshot(again);
    await applyRelease({ target: v2Target, deploymentId: again, version: '2.0.0', image: image('b') });
    assert.equal(await replicas(), 5);
    await restoreRelease({ target: v2Target, to: point2 });
    assert.equal(await replicas(), 5);
    const deployment = await apps.readNamespacedDeployment({ name, namespace });
    const ours = deployment.metadata?.managedFields?.find(
      (m) => m.manager === 'deploy-agent' && m.operation === 'Apply',
    );
    assert.ok(ours, 'restore applied the Deployment');
    assert.equal((ours.fieldsV1 as { 'f:spec'?: Record<string, unknown> })['f:spec']?.['f:replicas'], undefined);
    await consistent(point2);
    await autoscale(3);
    assert.equal(await replicas(), 3);
    await rolledOut();

    // A revision stored before: every managed field in its objects and hashes, the replica count included.
    const live = await liveRelease(cluster, v1Target, []);
    const entries = live.raw
      .map((object) => {
        const managed = managedFields(object);
        return { ...refOf(object), hash: hashObject(managed), object: managed };
      })
      .sort(byApplyOrder);
    const storedDeployment = entries.find((e) => e.kind === 'Deployment');
    assert.equal((storedDeployment?.object.spec as { replicas?: number }).replicas, 3);
    const state = { ...describeRelease(v1Target, live), configHash: releaseHash(entries) };
    assert.notEqual(state.configHash, describeRelease(v1Target, live).configHash);
    const revisions = await core.listNamespacedSecret({
      namespace,
      labelSelector: 'deploy-agent.dev/snapshot-service=web-shop',
    });
    const revision =
      Math.max(...revisions.items.map((s) => Number(s.metadata?.labels?.['deploy-agent.dev/revision']))) + 1;
    const takenBy = deploymentId();
    const json = JSON.stringify({
      format: 1,
      service: 'web-shop',
      environment: 'production',
      revision,
      takenBy,
      takenAt: new Date().toISOString(),
      ...state,
      entries,
    });
    const handle = `deploy-agent.web-shop.production.v${revision}`;
    // Signed as the worker signs revisions: this revision's point is its content, stored before.
    const signed = signRevision(keyRingFromEnv(), { namespace, name: handle, content: json });
    await core.createNamespacedSecret({
      namespace,
      body: {
        metadata: {
          name: handle,
          labels: {
            'deploy-agent.dev/snapshot-service': 'web-shop',
            'deploy-agent.dev/snapshot-environment': 'production',
            'deploy-agent.dev/revision': String(revision),
          },
          annotations: {
            'deploy-agent.dev/taken-by': takenBy,
            'deploy-agent.dev/content-sha256': sha256(json),
            'deploy-agent.dev/hmac-sha256': signed.hmac,
            'deploy-agent.dev/key-id': signed.keyId,
          },
        },
        type: 'deploy-agent.dev/release-snapshot',
        data: { release: gzipSync(json).toString('base64') },
      },
    });
    const stored: ReleaseState = { ...state, handle };
    await autoscale(4);
    await rolledOut();
    const old = await consistent(stored);
    const check = old.checks.find((c) => c.field === 'Deployment/web-shop');
    assert.notEqual(check?.expected, storedDeployment?.hash, 'the expected hash is computed again, not read');
    const kept = await kubernetesDriver(v1Target).keptReleases();
    assert.equal(kept.kept[0]?.configHash, kept.live.configHash, 'the stored revision equals the live release');
    await tamper('ConfigMap', 'v1', 'web-shop-config', { data: { LOG_LEVEL: 'debug' } });
    await restoreRelease({ target: v1Target, to: stored });
    assert.equal(await replicas(), 4, 'the replica count stored in the revision is not written back');
    await consistent(stored);
  });

  void it("the worker's Role keeps it to its namespaces and to the kinds it grants: the rest is refused (403)", async () => {
    const cluster = connect(target);
    // A 403 is the worker's missing permission: not retried, and the message names who asked for what.
    const refused = (what: string) => (error: unknown) => {
      assert.equal(failureKindOf(error), 'forbidden', `${what}: ${String(error)}`);
      assert.ok(messageOf(error).includes(`User "${worker.username}"`), `${what}: ${messageOf(error)}`);
      return true;
    };
    // Its own namespace object it reads (validation checks it exists); no other.
    await cluster.request('GET', `/api/v1/namespaces/${NAMESPACE}`);
    await assert.rejects(cluster.request('GET', '/api/v1/namespaces/kube-system'), refused('another namespace'));
    await assert.rejects(
      cluster.request('GET', '/api/v1/namespaces/kube-system/secrets'),
      refused('Secrets elsewhere'),
    );
    await assert.rejects(
      serverSideApply(
        cluster,
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'web-shop-config', namespace: 'kube-system' } },
        { fieldManager: target.fieldManager },
      ),
      refused('applying in another namespace'),
    );
    await assert.rejects(
      cluster.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRole',
          metadata: { name: 'worker-escalates' },
        },
      }),
      refused('creating a ClusterRole'),
    );
    // Nor can it grant itself more where it deploys.
    await assert.rejects(
      cluster.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NAMESPACE}/rolebindings`, {
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'worker-escalates' },
          subjects: [{ kind: 'ServiceAccount', name: 'deploy-agent-worker', namespace: 'deploy-agent' }],
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        },
      }),
      refused('binding cluster-admin'),
    );
    // A release holding a kind the Role does not let it write fails its dry run, naming the object; nothing changes.
    const dir = path.join(workDir, 'web-shop-network-policy');
    await cp(manifests('web-shop'), dir, { recursive: true });
    await writeFile(
      path.join(dir, 'network-policy.yaml'),
      'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web-shop\nspec:\n  podSelector: {}\n',
    );
    const problems = await dryRunRelease({ ...target, manifestsDir: dir }, image('a'));
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(
      problems[0] ?? '',
      /^NetworkPolicy\/shop\/web-shop: .*forbidden: .* cannot patch resource "networkpolicies"/,
    );
  });

  void it('an unreachable apiserver is TargetUnreachable', async () => {
    assert.ok(plane);
    const closed = `https://127.0.0.1:${await freePort()}`;
    const kubeconfig = path.join(workDir, 'unreachable.kubeconfig');
    const text = await readFile(worker.kubeconfigPath, 'utf8');
    await writeFile(kubeconfig, text.replace(plane.server, closed), { mode: 0o600 });
    const unreachable = { ...target, kubeconfig };
    const failure = await failureOf(inspectKubernetesEnvironment(unreachable, []), failureKinds.unreachable.type);
    assert.match(failure.message, /Kubernetes API https:\/\/127\.0\.0\.1:\d+ is unreachable/);
    await failureOf(kubernetesDriver(unreachable).snapshot(deploymentId()), failureKinds.unreachable.type);
    await failureOf(dryRunRelease(unreachable, image('a')), failureKinds.unreachable.type);
  });
});
