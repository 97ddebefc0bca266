// Integration test of the local Kubernetes control plane: real apiserver, controller-manager and scheduler,
// with kwok standing in for kubelets. Needs the binaries from stack/provision-kube.sh.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { SIMULATE_ANNOTATION, startKubeControlPlane, type KubeControlPlane } from '../../stack/kube.js';

const NAMESPACE = 'stack-test';

/** Polls until check() returns a value; bounded in time and in attempts. */
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const intervalMs = 250;
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (let attempt = 0; attempt <= timeoutMs / intervalMs && Date.now() < deadline; attempt++) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
}

function deployment(
  name: string,
  replicas: number,
  annotations: Record<string, string> = {},
  progressDeadlineSeconds?: number,
): k8s.V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NAMESPACE },
    spec: {
      replicas,
      progressDeadlineSeconds,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, annotations },
        // No image is ever pulled: kwok only fakes the status a kubelet would report.
        spec: { containers: [{ name: 'app', image: `registry.invalid/${name}:1` }] },
      },
    },
  };
}

function isReady(pod: k8s.V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

void describe('local Kubernetes control plane', { timeout: 240_000 }, () => {
  let workDir: string;
  let plane: KubeControlPlane | undefined;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;

  before(
    async () => {
      workDir = await mkdtemp(path.join(os.tmpdir(), 'kube-stack-'));
      const started = Date.now();
      plane = await startKubeControlPlane(workDir, { nodes: 2 });
      console.log(`control plane ready in ${Date.now() - started} ms at ${plane.server}`);
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(plane.kubeconfigPath);
      assert.equal(kc.getCurrentContext(), 'local');
      core = kc.makeApiClient(k8s.CoreV1Api);
      apps = kc.makeApiClient(k8s.AppsV1Api);
      await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    },
    { timeout: 150_000 },
  );

  after(async () => {
    await plane?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  void it('serves the pinned version and lists the kwok nodes as Ready', async () => {
    assert.ok(plane);
    assert.match(plane.server, /^https:\/\/127\.0\.0\.1:\d+$/);
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    const version = await kc.makeApiClient(k8s.VersionApi).getCode();
    assert.match(version.gitVersion, /^v1\.\d+\.\d+$/);
    const nodes = await core.listNode();
    assert.deepEqual(nodes.items.map((n) => n.metadata?.name).sort(), [...plane.nodeNames].sort());
  });

  void it(
    'runs a Deployment: ReplicaSet from the controller-manager, pods scheduled onto kwok nodes and Ready',
    { timeout: 90_000 },
    async () => {
      assert.ok(plane);
      await apps.createNamespacedDeployment({ namespace: NAMESPACE, body: deployment('web', 2) });

      const available = await eventually('Deployment web to report 2 available replicas', 60_000, async () => {
        const d = await apps.readNamespacedDeployment({ name: 'web', namespace: NAMESPACE });
        return d.status?.availableReplicas === 2 ? d : undefined;
      });
      assert.equal(available.status?.readyReplicas, 2);

      const replicaSets = await apps.listNamespacedReplicaSet({ namespace: NAMESPACE, labelSelector: 'app=web' });
      assert.equal(replicaSets.items.length, 1);
      const owner = replicaSets.items[0]?.metadata?.ownerReferences?.[0];
      assert.equal(owner?.kind, 'Deployment');
      assert.equal(owner?.name, 'web');

      const pods = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app=web' });
      assert.equal(pods.items.length, 2);
      for (const pod of pods.items) {
        assert.ok(
          plane.nodeNames.includes(pod.spec?.nodeName ?? ''),
          `pod ${pod.metadata?.name} on ${pod.spec?.nodeName}`,
        );
        assert.equal(pod.status?.phase, 'Running');
        assert.ok(isReady(pod), `pod ${pod.metadata?.name} Ready`);
      }
    },
  );

  void it(
    'keeps pods of a release marked unready Running but not Ready, and the Deployment misses its deadline',
    { timeout: 90_000 },
    async () => {
      const progressDeadlineSeconds = 5;
      await apps.createNamespacedDeployment({
        namespace: NAMESPACE,
        body: deployment('broken', 2, { [SIMULATE_ANNOTATION]: 'unready' }, progressDeadlineSeconds),
      });

      const running = await eventually('pods of broken to be Running', 60_000, async () => {
        const pods = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app=broken' });
        const all = pods.items.filter((p) => p.status?.phase === 'Running');
        return all.length === 2 ? all : undefined;
      });
      for (const pod of running) assert.equal(isReady(pod), false, `pod ${pod.metadata?.name} must not be Ready`);

      const stalled = await eventually(
        'Deployment broken to report ProgressDeadlineExceeded',
        (progressDeadlineSeconds + 30) * 1000,
        async () => {
          const d = await apps.readNamespacedDeployment({ name: 'broken', namespace: NAMESPACE });
          const progressing = d.status?.conditions?.find((c) => c.type === 'Progressing');
          return progressing?.status === 'False' ? { d, progressing } : undefined;
        },
      );
      assert.equal(stalled.progressing.reason, 'ProgressDeadlineExceeded');
      assert.equal(stalled.d.status?.availableReplicas ?? 0, 0);

      // Still not Ready well after the deadline: the stage applies once and nothing flips it later.
      const pods = await core.listNamespacedPod({ namespace: NAMESPACE, labelSelector: 'app=broken' });
      assert.equal(pods.items.length, 2);
      for (const pod of pods.items) {
        assert.equal(pod.status?.phase, 'Running');
        assert.equal(isReady(pod), false);
      }
    },
  );
});
