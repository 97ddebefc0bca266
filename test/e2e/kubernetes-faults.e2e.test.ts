/**
 * Faults of the Kubernetes API on the real stack, through the CLI as CI runs it: the API server stops in the middle
 * of an apply and comes back, and an API server throttles (429 with Retry-After). Whatever a deploy reports at the
 * end, the cluster must hold exactly that release: every object once, nothing of a release that was rolled back.
 * Through the throttling proxy the worker reaches the cluster as its own ServiceAccount, with the rights of
 * examples/kubernetes/worker-rbac.yaml.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { type Client, Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import { parseDeploymentId, type DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { startKubeControlPlane, workerKubeconfig } from '../../stack/kube.js';
import { sleep } from '../../stack/processes.js';
import { runCli, type CliResult } from '../support/cli.js';
import { startTestTemporal, testPolicy, writeTestFiles } from '../support/spec-fixtures.js';
import { testKeysEnv } from '../support/keys.js';
import { startThrottlingProxy, type ThrottlingProxy } from '../support/throttling-proxy.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const SERVICE = 'web-shop';
/** The web-shop fixture's own objects; each test adds ConfigMaps so that its apply takes a while. */
const FIXTURE_OBJECTS = [
  'ConfigMap/web-shop-config',
  'Deployment/web-shop',
  'Secret/web-shop-secret',
  'Service/web-shop',
];
const OUTAGE_MS = 30_000;
/** How long a deploy may run before the CLI is given up on: budgets, compensation and a slow machine included. */
const DEPLOY_TIMEOUT_MS = 600_000;

/** Each test's environment and namespace share a name. */
const NAMESPACES = ['outage', 'throttled'];

const ANNOTATION = { deploymentId: 'deploy-agent.dev/deployment-id', version: 'deploy-agent.dev/version' };

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;
type ControlPlane = Awaited<ReturnType<typeof startKubeControlPlane>>;

/** The release a namespace must hold: which deployment and version stamped its objects, and the image it runs. */
interface ExpectedRelease {
  deploymentId: string;
  version: string;
  image: string;
  objects: string[];
}

describe('deploys to Kubernetes through faults of its API server', { timeout: 1_800_000 }, () => {
  let workDir: string;
  let docker: DockerStack | undefined;
  let plane: ControlPlane | undefined;
  let temporal: DevStack | undefined;
  let connection: Connection | undefined;
  let proxy: ThrottlingProxy | undefined;
  let client: Client;
  let core: k8s.CoreV1Api;
  let apps: k8s.AppsV1Api;
  let coordination: k8s.CoordinationV1Api;
  let env: Record<string, string>;
  /** The worker's kubeconfig, and the one the throttled environment reaches the cluster through a proxy with. */
  let workerConfig: string;
  let throttledConfig: string;
  const images: Record<string, string> = {};

  const cluster = (): ControlPlane => {
    assert.ok(plane, 'the control plane runs');
    return plane;
  };

  before(async () => {
    // The in-process worker signs and verifies revisions with the test process's key ring.
    testKeysEnv();
    workDir = await mkdtemp(join(tmpdir(), 'deploy-kube-faults-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    for (const version of ['1.0.0', '1.1.0']) {
      const repository = `${docker.registry.address}/${SERVICE}`;
      const { digest } = await buildServiceImage(docker, { repository, version, healthy: true });
      images[version] = `${repository}@${digest}`;
    }
    plane = await startKubeControlPlane(join(workDir, 'kube'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
    apps = kc.makeApiClient(k8s.AppsV1Api);
    coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    for (const name of NAMESPACES) await core.createNamespace({ body: { metadata: { name } } });
    workerConfig = (
      await workerKubeconfig(plane, { namespaces: ['throttled', 'outage'], file: join(workDir, 'worker.kubeconfig') })
    ).kubeconfigPath;
    // Written by the throttling test once its proxy listens; the policy only names it.
    throttledConfig = join(workDir, 'throttled.kubeconfig');
    const environment = (namespace: string, kubeconfig: string) => ({
      kubernetes: { kubeconfig, namespace },
      budgets: { environmentUpdate: '4m' },
    });
    const { policyFile } = await writeTestFiles(workDir, {
      policy: testPolicy([workDir], {
        // As the worker's ServiceAccount: for a moment after its restart, before its RBAC caches fill, the API server
        // refuses it (403, its Role "not found"), which the worker must take as not ready yet, not as final.
        outage: environment('outage', workerConfig),
        throttled: environment('throttled', throttledConfig),
      }),
    });
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
    connection = await Connection.connect({ address: temporal.address });
    client = testClient(connection);
  });

  after(async () => {
    // The API server may still be down if a test failed during the outage: stopping the plane covers it.
    await Promise.allSettled([proxy?.close(), connection?.close()]);
    await Promise.allSettled([temporal?.stop(), plane?.stop(), docker?.stop()]);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A spec whose release is the web-shop fixture plus `extra` ConfigMaps, in a directory of the namespace's. */
  async function specFor(namespace: string, extra: number): Promise<string> {
    assert.ok(docker);
    const dir = join(workDir, `release-${namespace}`);
    await cp(join(FIXTURES, 'web-shop'), dir, { recursive: true });
    await writeFile(
      join(dir, 'extra.yaml'),
      Array.from(
        { length: extra },
        (_, i) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-shop-extra-${i}\ndata:\n  index: "${i}"\n`,
      ).join('---\n'),
    );
    for (const file of await readdir(dir)) {
      const text = await readFile(join(dir, file), 'utf8');
      await writeFile(join(dir, file), text.replaceAll('127.0.0.1:5000', docker.registry.address));
    }
    const spec = join(workDir, `deploy-${namespace}.yaml`);
    await writeFile(
      spec,
      `service: ${SERVICE}
target: kubernetes
image:
  repository: ${docker.registry.address}/${SERVICE}
release:
  manifests: ${dir}
healthCheck:
  healthyWithin: 90s
`,
    );
    return spec;
  }

  const objectsOf = (extra: number): string[] =>
    [...FIXTURE_OBJECTS, ...Array.from({ length: extra }, (_, i) => `ConfigMap/web-shop-extra-${i}`)].sort();

  const deploy = (spec: string, environment: string, version: string): Promise<CliResult> =>
    runCli(
      ['deploy', '-f', spec, '--env', environment, '--version', version, '--wait', '--json'],
      env,
      DEPLOY_TIMEOUT_MS,
    );

  const statusOf = (result: CliResult): DeploymentStatus => {
    try {
      return JSON.parse(result.stdout) as DeploymentStatus;
    } catch {
      assert.fail(`deploy printed no report (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
    }
  };

  /** The last attempt of an activity in a deployment's history, and why the attempt before it failed. */
  async function lastAttempt(
    deploymentId: string,
    activity: string,
  ): Promise<{ attempt: number; lastFailure: string }> {
    const { workflowId, runId } = parseDeploymentId(deploymentId);
    const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    const scheduled = new Set(
      events
        .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === activity)
        .map((e) => String(e.eventId)),
    );
    const started = events
      .map((e) => e.activityTaskStartedEventAttributes)
      .filter((a) => a && scheduled.has(String(a.scheduledEventId)));
    const last = started.at(-1);
    return { attempt: last?.attempt ?? 0, lastFailure: last?.lastFailure?.message ?? '' };
  }

  /** What the release's labels select in a namespace, as Kind/name, with the stamps of each object. */
  async function labelledObjects(namespace: string) {
    const labelSelector = `deploy-agent.dev/service=${SERVICE},deploy-agent.dev/environment=${namespace}`;
    const lists = await Promise.all([
      core.listNamespacedConfigMap({ namespace, labelSelector }).then((l) => ['ConfigMap', l.items] as const),
      core.listNamespacedSecret({ namespace, labelSelector }).then((l) => ['Secret', l.items] as const),
      core.listNamespacedService({ namespace, labelSelector }).then((l) => ['Service', l.items] as const),
      apps.listNamespacedDeployment({ namespace, labelSelector }).then((l) => ['Deployment', l.items] as const),
    ]);
    return lists.flatMap(([kind, items]) =>
      items.map((item: { metadata?: k8s.V1ObjectMeta }) => ({
        id: `${kind}/${item.metadata?.name ?? '?'}`,
        deploymentId: item.metadata?.annotations?.[ANNOTATION.deploymentId],
        version: item.metadata?.annotations?.[ANNOTATION.version],
      })),
    );
  }

  /**
   * The namespace holds exactly the expected release: each of its objects once and stamped by its deployment, no
   * other object of the service, the image rolled out on both replicas, one rollback point per deployment and one
   * fence. `what` names the reading in messages.
   */
  async function assertLiveRelease(namespace: string, expected: ExpectedRelease, what: string): Promise<void> {
    const objects = await labelledObjects(namespace);
    assert.deepEqual(
      objects.map((o) => o.id).sort(),
      expected.objects,
      `${what}: the objects of the service in ${namespace}`,
    );
    const stale = objects.filter((o) => o.deploymentId !== expected.deploymentId || o.version !== expected.version);
    assert.deepEqual(
      stale.map((o) => `${o.id} of ${o.deploymentId ?? '?'} (${o.version ?? '?'})`),
      [],
      `${what}: objects not stamped by ${expected.deploymentId} (${expected.version})`,
    );

    const deployment = await apps.readNamespacedDeployment({ name: SERVICE, namespace });
    assert.equal(deployment.spec?.template.spec?.containers[0]?.image, expected.image, `${what}: the live image`);
    assert.equal(deployment.status?.observedGeneration, deployment.metadata?.generation, `${what}: rollout observed`);
    assert.equal(deployment.status?.updatedReplicas, 2, `${what}: updated replicas`);
    assert.equal(deployment.status?.readyReplicas, 2, `${what}: ready replicas`);
    const replicaSets = (await apps.listNamespacedReplicaSet({ namespace })).items.filter((rs) =>
      rs.metadata?.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === SERVICE),
    );
    const scaledUp = replicaSets.filter((rs) => (rs.spec?.replicas ?? 0) > 0);
    assert.deepEqual(
      scaledUp.map((rs) => rs.spec?.template?.spec?.containers[0]?.image),
      [expected.image],
      `${what}: one ReplicaSet scaled up, of the live image`,
    );

    const revisions = (
      await core.listNamespacedSecret({ namespace, labelSelector: `deploy-agent.dev/snapshot-service=${SERVICE}` })
    ).items;
    const takenBy = revisions.map((s) => s.metadata?.annotations?.['deploy-agent.dev/taken-by'] ?? '?');
    assert.equal(
      new Set(takenBy).size,
      takenBy.length,
      `${what}: one rollback point per deployment: ${takenBy.join(', ')}`,
    );
    const leases = (await coordination.listNamespacedLease({ namespace })).items.map((l) => l.metadata?.name);
    assert.deepEqual(leases, [`deploy-agent.${SERVICE}.${namespace}`], `${what}: one fence`);
  }

  /** The pods of the live release settle to its two replicas (old ones may take a moment to go); bounded. */
  async function assertPodsSettle(namespace: string, image: string): Promise<void> {
    let seen: string[] = [];
    for (let round = 0; round < 120; round++) {
      const pods = (
        await core.listNamespacedPod({ namespace, labelSelector: `app.kubernetes.io/name=${SERVICE}` })
      ).items.filter((p) => !p.metadata?.deletionTimestamp);
      seen = pods.map((p) => `${p.metadata?.name ?? '?'} ${p.spec?.containers[0]?.image ?? '?'} ${p.status?.phase}`);
      if (pods.length === 2 && pods.every((p) => p.spec?.containers[0]?.image === image)) return;
      await sleep(500);
    }
    assert.fail(`the pods of ${namespace} did not settle to two of ${image}: ${seen.join('; ')}`);
  }

  it(
    'an API server stopped for 30 s mid-apply: the deploy ends succeeded or rolled back, the cluster holds exactly ' +
      'the release its report names, every object once, nothing of a rolled-back release left',
    async (t) => {
      const namespace = 'outage';
      const extra = 150;
      const spec = await specFor(namespace, extra);

      const first = await deploy(spec, namespace, '1.0.0');
      assert.equal(first.code, 0, first.stdout + first.stderr);
      const baseline = statusOf(first);

      let settled = false;
      const deploying = deploy(spec, namespace, '1.1.0');
      // Handled here so that a failure below does not leave an unhandled rejection; awaited again further down.
      void deploying.then(
        () => (settled = true),
        () => (settled = true),
      );

      // The apply has started once objects stamped with the new version appear; the outage must begin before it ends.
      const newVersion = { namespace, labelSelector: 'deploy-agent.dev/version=1.1.0' };
      let appliedBeforeOutage = 0;
      for (let round = 0; round < 3_000 && appliedBeforeOutage === 0; round++) {
        assert.ok(!settled, 'the deploy ended before its apply was seen');
        appliedBeforeOutage = (await core.listNamespacedConfigMap(newVersion)).items.length;
        if (appliedBeforeOutage === 0) await sleep(100);
      }
      assert.ok(appliedBeforeOutage > 0, 'the apply of 1.1.0 did not start');
      await cluster().stopApiServer();
      try {
        assert.ok(appliedBeforeOutage < extra, `the apply had reached ${appliedBeforeOutage} ConfigMaps already`);
        t.diagnostic(`API server stopped after ${appliedBeforeOutage} of ${extra + 1} ConfigMaps were applied`);
        await sleep(OUTAGE_MS);
      } finally {
        await cluster().startApiServer();
      }

      const result = await deploying;
      assert.ok(result.code === 0 || result.code === 1, `exit ${result.code}:\n${result.stdout}\n${result.stderr}`);
      const status = statusOf(result);
      t.diagnostic(`the deploy ended ${status.state}`);
      const apply = await lastAttempt(status.deploymentId, 'applyRelease');
      t.diagnostic(`applyRelease attempts: ${apply.attempt}; the one before the last failed: ${apply.lastFailure}`);
      assert.ok(apply.attempt >= 2, 'the outage interrupted the apply, which was tried again');

      let expected: ExpectedRelease;
      if (status.state === 'succeeded') {
        assert.equal(result.code, 0);
        assert.equal(status.applied?.deploymentId, status.deploymentId, 'the report names this deploy as applied');
        assert.equal(status.applied?.version, '1.1.0');
        assert.equal(status.applied?.imageDigest, images['1.1.0']?.split('@')[1], 'the report names 1.1.0');
        expected = {
          deploymentId: status.deploymentId,
          version: '1.1.0',
          image: images['1.1.0'] ?? '',
          objects: objectsOf(extra),
        };
      } else {
        assert.equal(status.state, 'rolled-back', result.stdout);
        assert.equal(status.rollback?.consistency?.consistent, true, JSON.stringify(status.rollback));
        assert.equal(status.rollback?.restoredTo.deploymentId, baseline.deploymentId, 'restored to the baseline');
        assert.equal(status.rollback?.restoredTo.imageDigest, images['1.0.0']?.split('@')[1], 'restored 1.0.0');
        expected = {
          deploymentId: baseline.deploymentId,
          version: '1.0.0',
          image: images['1.0.0'] ?? '',
          objects: objectsOf(extra),
        };
      }
      await assertLiveRelease(namespace, expected, 'when the deploy ended');
      await assertPodsSettle(namespace, expected.image);
      await sleep(5_000);
      await assertLiveRelease(namespace, expected, 'five seconds later');
      const revisions = (
        await core.listNamespacedSecret({ namespace, labelSelector: `deploy-agent.dev/snapshot-service=${SERVICE}` })
      ).items.map((s) => s.metadata?.annotations?.['deploy-agent.dev/taken-by']);
      assert.deepEqual(
        revisions.filter((by) => by === status.deploymentId),
        [status.deploymentId],
        'one rollback point taken by the deploy that met the outage',
      );
    },
  );

  it(
    'an API server answering 429 with Retry-After to every 5th request: the deploy succeeds, each throttled ' +
      'request waited out and then served, every object applied and the image live',
    async (t) => {
      const namespace = 'throttled';
      const extra = 30;
      const { servingCertificate, server } = cluster();
      const cert = await readFile(servingCertificate.certFile, 'utf8');
      proxy = await startThrottlingProxy({
        upstream: server,
        upstreamCa: cert,
        cert,
        key: await readFile(servingCertificate.keyFile, 'utf8'),
        every: 5,
        retryAfterSeconds: 1,
      });
      // The worker's credentials and the same CA: the proxy serves the API server's own certificate.
      await writeFile(throttledConfig, (await readFile(workerConfig, 'utf8')).replace(server, proxy.url), {
        mode: 0o600,
      });
      const spec = await specFor(namespace, extra);

      const result = await deploy(spec, namespace, '1.0.0');
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const status = statusOf(result);
      assert.equal(status.state, 'succeeded');

      const requests = proxy.requests;
      const throttled = requests.flatMap((r, index) => (r.throttled ? [{ ...r, index }] : []));
      const applies = throttled.filter(
        (r) => r.method === 'PATCH' && r.query.has('fieldManager') && !r.query.has('dryRun'),
      );
      t.diagnostic(`${requests.length} requests, ${throttled.length} answered 429, ${applies.length} of them applies`);
      assert.ok(applies.length >= 3, `only ${applies.length} server-side applies were throttled`);
      const unserved = throttled.filter(
        (r) =>
          !requests
            .slice(r.index + 1)
            .some(
              (later) =>
                !later.throttled &&
                later.method === r.method &&
                later.path === r.path &&
                later.query.toString() === r.query.toString() &&
                later.status !== 429 &&
                later.status < 500,
            ),
      );
      assert.deepEqual(
        unserved.map((r) => `${r.method} ${r.path}?${r.query.toString()}`),
        [],
        'throttled requests never served afterwards',
      );
      // Requests are made one at a time, so a throttled one is let through when repeated: no attempt had to fail.
      const apply = await lastAttempt(status.deploymentId, 'applyRelease');
      assert.equal(apply.attempt, 1, `the apply failed and was retried: ${apply.lastFailure}`);

      const expected = {
        deploymentId: status.deploymentId,
        version: '1.0.0',
        image: images['1.0.0'] ?? '',
        objects: objectsOf(extra),
      };
      await assertLiveRelease(namespace, expected, 'when the deploy ended');
      await assertPodsSettle(namespace, expected.image);
    },
  );
});
