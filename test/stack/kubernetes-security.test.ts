/**
 * The security check against a real Kubernetes control plane, as the worker runs it (its ServiceAccount, with the
 * example's Role): manifests after image substitution, and the namespace's pod security label read from the cluster.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { securityActivities } from '../../activities/security/index.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { SecurityFinding } from '../../domain/security.js';
import { startKubeControlPlane, workerKubeconfig, type KubeControlPlane } from '../../stack/kube.js';

const NAMESPACE = 'shop';
const REPOSITORY = '127.0.0.1:5000/web-shop';
const DIGEST = `sha256:${'b'.repeat(64)}`;
const PROTECTED = { protected: true, overrides: {} };

/** A Deployment of the release image that passes every rule, unless `container` or `pod` change it. */
function deployment(container: Record<string, unknown> = {}, pod: Record<string, unknown> = {}) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web-shop' },
    spec: {
      selector: { matchLabels: { app: 'web-shop' } },
      template: {
        metadata: { labels: { app: 'web-shop' } },
        spec: {
          securityContext: { runAsNonRoot: true, runAsUser: 65534 },
          containers: [
            {
              name: 'web',
              image: `${REPOSITORY}:latest`,
              resources: { limits: { memory: '64Mi', cpu: '250m' } },
              ...container,
            },
          ],
          ...pod,
        },
      },
    },
  };
}

describe('security rules against a Kubernetes control plane', { timeout: 300_000 }, () => {
  let workDir: string;
  let plane: KubeControlPlane;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let target: KubernetesTarget;
  let activities: ReturnType<typeof securityActivities>;

  const release = async (name: string, objects: unknown[]) => {
    const dir = path.join(workDir, name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'app.yaml'), objects.map((o) => stringify(o)).join('---\n'));
    return { ...target, manifestsDir: dir };
  };
  const findings = async (releaseTarget: KubernetesTarget): Promise<SecurityFinding[]> =>
    activities.checkSecurity({
      target: releaseTarget,
      image: { reference: `${REPOSITORY}@${DIGEST}`, digest: DIGEST },
      version: '1.0.0',
      settings: PROTECTED,
    });
  const brief = (list: SecurityFinding[]) => list.map((f) => `${f.rule} ${f.object} ${f.field} ${f.action}`);

  before(
    async () => {
      workDir = await mkdtemp(path.join(os.tmpdir(), 'kubernetes-security-'));
      plane = await startKubeControlPlane(workDir, { nodes: 1 });
      const kc = new k8s.KubeConfig();
      kc.loadFromFile(plane.kubeconfigPath);
      core = kc.makeApiClient(k8s.CoreV1Api);
      apps = kc.makeApiClient(k8s.AppsV1Api);
      await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
      const worker = await workerKubeconfig(plane, {
        namespaces: [NAMESPACE],
        file: path.join(workDir, 'worker.kubeconfig'),
      });
      target = {
        kind: 'kubernetes',
        service: 'web-shop',
        environment: 'production',
        kubeconfig: worker.kubeconfigPath,
        context: 'local',
        namespace: NAMESPACE,
        manifestsDir: '',
        imageRepository: REPOSITORY,
        historyLimit: 3,
        fieldManager: 'deploy-agent',
      };
      const policyFile = path.join(workDir, 'policy.yaml');
      await writeFile(
        policyFile,
        stringify({
          identity: { insecureDevMode: true },
          environments: { production: { kubernetes: { kubeconfig: worker.kubeconfigPath, namespace: NAMESPACE } } },
        }),
      );
      activities = securityActivities(policyFile);
    },
    { timeout: 150_000 },
  );

  after(async () => {
    await plane?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('reads the namespace with the worker Role: without the restricted label it is denied in protected', async () => {
    assert.deepEqual(brief(await findings(await release('clean', [deployment()]))), [
      `namespace-restricted Namespace/${NAMESPACE} metadata.labels["pod-security.kubernetes.io/enforce"] deny`,
    ]);
  });

  it('passes once the namespace enforces restricted', async () => {
    const namespace = await core.readNamespace({ name: NAMESPACE });
    namespace.metadata = {
      ...namespace.metadata,
      labels: { ...namespace.metadata?.labels, 'pod-security.kubernetes.io/enforce': 'restricted' },
    };
    await core.replaceNamespace({ name: NAMESPACE, body: namespace });
    assert.deepEqual(brief(await findings(await release('clean', [deployment()]))), []);
  });

  it('denies privileged containers and hostPath volumes, naming object and field, and applies nothing', async () => {
    const risky = deployment(
      { securityContext: { privileged: true } },
      { volumes: [{ name: 'host', hostPath: { path: '/var/run' } }] },
    );
    assert.deepEqual(brief(await findings(await release('risky', [risky]))), [
      'no-privileged Deployment/web-shop spec.template.spec.containers[0].securityContext.privileged deny',
      'no-host-mounts Deployment/web-shop spec.template.spec.volumes[name=host].hostPath deny',
    ]);
    const deployments = await apps.listNamespacedDeployment({ namespace: NAMESPACE });
    assert.equal(deployments.items.length, 0);
  });
});
