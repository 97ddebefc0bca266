/**
 * The Kubernetes target's protections against a real control plane: revisions tampered with by someone holding edit
 * rights in the namespace are refused with nothing restored, so are revisions naming another namespace or a kind
 * restore may not write; apply does not take over an object the release does not own unless the policy allows it;
 * prune never deletes a PersistentVolumeClaim, an object annotated to be kept, or a same-named object someone else
 * recreated; names Kubernetes would refuse are refused first. The worker runs as the example Role's ServiceAccount;
 * prune runs as admin, so that a delete it wrongly attempted would succeed.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/activity';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage, ReleaseState } from '../../domain/release.js';
import { applyRelease } from '../../activities/kubernetes/apply.js';
import { kubernetesDriver } from '../../activities/kubernetes/driver.js';
import { sha256 } from '../../activities/kubernetes/objects.js';
import { restoreRelease, verifyRelease } from '../../activities/kubernetes/restore.js';
import { signRevision } from '../../activities/kubernetes/revision-integrity.js';
import { dryRunRelease, inspectKubernetesEnvironment } from '../../activities/kubernetes/validate.js';
import { keyRingFromEnv } from '../../keys/key-ring.js';
import { startKubeControlPlane, workerKubeconfig, type KubeControlPlane } from '../../stack/kube.js';
import { testKeysEnv } from '../support/keys.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const REPOSITORY = '127.0.0.1:5000/web-shop';
const INTEGRITY = 'integrity';
const ADOPT = 'adopt';
const PRUNE = 'prune';

const image = (hexDigit: string): PinnedImage => {
  const digest = `sha256:${hexDigit.repeat(64)}`;
  return { reference: `${REPOSITORY}@${digest}`, digest };
};
const deploymentId = (): string => `web-shop.production.${randomUUID()}`;

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    assert.equal(error.type, 'InvalidRelease', error.message);
    assert.equal(error.nonRetryable, true);
    return error.message;
  }
  assert.fail('expected a refusal');
}

interface SecretBody {
  metadata: { name: string; annotations: Record<string, string>; resourceVersion?: string };
  data: Record<string, string>;
}

void describe('Kubernetes target: integrity of rollback points and ownership', { timeout: 300_000 }, () => {
  let workDir: string;
  let plane: KubeControlPlane | undefined;
  let admin: k8s.CoreV1Api;
  /** Someone with the built-in `edit` role in the integrity namespace: may change Secrets, holds no key. */
  let editor: k8s.CoreV1Api;
  let workerConfig: string;
  const manifests = (name: string): string => path.join(FIXTURES, name);
  const targetIn = (namespace: string, more: Partial<KubernetesTarget> = {}): KubernetesTarget => ({
    kind: 'kubernetes',
    service: 'web-shop',
    environment: 'production',
    kubeconfig: workerConfig,
    context: 'local',
    namespace,
    manifestsDir: manifests('web-shop'),
    imageRepository: REPOSITORY,
    historyLimit: 5,
    fieldManager: 'deploy-agent',
    ...more,
  });

  /** Every object of the namespace, by kind and name, with its resourceVersion: equal means nothing changed. */
  async function versions(namespace: string): Promise<Record<string, string>> {
    const apps = k8sConfig().makeApiClient(k8s.AppsV1Api);
    const all: Record<string, string> = {};
    const add = (kind: string, items: { metadata?: k8s.V1ObjectMeta }[]) => {
      for (const item of items) all[`${kind}/${item.metadata?.name}`] = item.metadata?.resourceVersion ?? '';
    };
    add('ConfigMap', (await admin.listNamespacedConfigMap({ namespace })).items);
    add('Secret', (await admin.listNamespacedSecret({ namespace })).items);
    add('Service', (await admin.listNamespacedService({ namespace })).items);
    add('PersistentVolumeClaim', (await admin.listNamespacedPersistentVolumeClaim({ namespace })).items);
    add('Deployment', (await apps.listNamespacedDeployment({ namespace })).items);
    return all;
  }

  let adminConfig: k8s.KubeConfig;
  const k8sConfig = () => adminConfig;

  before(
    async () => {
      testKeysEnv();
      workDir = await mkdtemp(path.join(os.tmpdir(), 'kubernetes-ownership-'));
      plane = await startKubeControlPlane(workDir, { nodes: 1 });
      adminConfig = new k8s.KubeConfig();
      adminConfig.loadFromFile(plane.kubeconfigPath);
      admin = adminConfig.makeApiClient(k8s.CoreV1Api);
      for (const name of [INTEGRITY, ADOPT, PRUNE]) await admin.createNamespace({ body: { metadata: { name } } });
      workerConfig = (
        await workerKubeconfig(plane, { namespaces: [INTEGRITY, ADOPT], file: path.join(workDir, 'worker.kubeconfig') })
      ).kubeconfigPath;

      // A namespace editor: a ServiceAccount bound to the built-in ClusterRole edit, through a token of its own.
      await admin.createNamespacedServiceAccount({ namespace: INTEGRITY, body: { metadata: { name: 'editor' } } });
      const rbac = adminConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
      await rbac.createNamespacedRoleBinding({
        namespace: INTEGRITY,
        body: {
          metadata: { name: 'editor' },
          subjects: [{ kind: 'ServiceAccount', name: 'editor', namespace: INTEGRITY }],
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
        },
      });
      const token = await admin.createNamespacedServiceAccountToken({
        name: 'editor',
        namespace: INTEGRITY,
        body: { spec: { audiences: [], expirationSeconds: 3600 } },
      });
      const cluster = adminConfig.getCurrentCluster();
      assert.ok(cluster && token.status?.token);
      const editorConfig = new k8s.KubeConfig();
      editorConfig.loadFromOptions({
        clusters: [cluster],
        users: [{ name: 'editor', token: token.status.token }],
        contexts: [{ name: 'local', cluster: cluster.name, user: 'editor' }],
        currentContext: 'local',
      });
      editor = editorConfig.makeApiClient(k8s.CoreV1Api);
      // The editor's rights are what the scenario says: Secrets here yes, elsewhere no.
      await admin.createNamespacedConfigMap({ namespace: ADOPT, body: { metadata: { name: 'probe' } } });
      await assert.rejects(editor.listNamespacedSecret({ namespace: ADOPT }));
    },
    { timeout: 150_000 },
  );

  after(async () => {
    await plane?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  describe('revisions', () => {
    const target = () => targetIn(INTEGRITY);
    const v2 = () => targetIn(INTEGRITY, { manifestsDir: manifests('web-shop-v2') });
    let point: ReleaseState;

    /** As the editor: the revision Secret, changed by `change`, written back. */
    async function tamper(name: string, change: (secret: SecretBody) => void): Promise<void> {
      const secret = (await editor.readNamespacedSecret({ name, namespace: INTEGRITY })) as unknown as SecretBody;
      change(secret);
      await editor.replaceNamespacedSecret({ name, namespace: INTEGRITY, body: secret });
    }
    const content = (secret: SecretBody): string =>
      gunzipSync(Buffer.from(secret.data.release ?? '', 'base64')).toString('utf8');
    const storeContent = (secret: SecretBody, json: string): void => {
      secret.data.release = gzipSync(json).toString('base64');
      // The unkeyed content hash anyone can compute again: only the HMAC stands in the way.
      secret.metadata.annotations['deploy-agent.dev/content-sha256'] = sha256(json);
    };

    /** Restore refused, naming the revision and why, with every object of the namespace as it was. */
    async function refusedRestore(to: ReleaseState, why: RegExp): Promise<string> {
      const before = await versions(INTEGRITY);
      const message = await refusal(restoreRelease({ target: v2(), to }));
      assert.ok(message.includes(`revision ${to.handle} is refused`), message);
      assert.match(message, why);
      assert.match(message, /nothing was restored from it$/);
      assert.deepEqual(await versions(INTEGRITY), before, 'nothing was applied or deleted');
      return message;
    }

    before(async () => {
      await kubernetesDriver(target()).snapshot(deploymentId());
      await applyRelease({ target: target(), deploymentId: deploymentId(), version: '1.0.0', image: image('a') });
    });

    void it('records the revision name and its HMAC in the rollback point the history keeps', async () => {
      const id = deploymentId();
      point = await kubernetesDriver(v2()).snapshot(id);
      assert.equal(point.integrity?.revision, point.handle);
      assert.equal(point.integrity?.keyId, 'test');
      assert.match(point.integrity?.hmac ?? '', /^[0-9a-f]{64}$/);
      const stored = await admin.readNamespacedSecret({ name: point.handle ?? '', namespace: INTEGRITY });
      assert.equal(stored.metadata?.annotations?.['deploy-agent.dev/hmac-sha256'], point.integrity?.hmac);
      assert.equal(stored.metadata?.annotations?.['deploy-agent.dev/key-id'], 'test');
      assert.deepEqual(await kubernetesDriver(v2()).snapshot(id), point, 'a retried snapshot returns the same proof');
      await applyRelease({ target: v2(), deploymentId: id, version: '2.0.0', image: image('b') });
    });

    void it('refuses a revision whose content an editor changed, restoring nothing', async () => {
      const name = point.handle ?? '';
      const original = (await editor.readNamespacedSecret({ name, namespace: INTEGRITY })) as unknown as SecretBody;
      await tamper(name, (secret) => {
        const json = content(secret).replace('"LOG_LEVEL":"info"', '"LOG_LEVEL":"tampered"');
        assert.notEqual(json, content(secret));
        storeContent(secret, json);
      });
      await refusedRestore(point, /its HMAC does not verify: the Secret was altered after it was stored/);
      // Verification and the listing a rollback chooses from refuse it too.
      await refusal(verifyRelease(v2(), point));
      await refusal(kubernetesDriver(v2()).keptReleases());
      await tamper(name, (secret) => {
        secret.data = original.data;
        secret.metadata.annotations = original.metadata.annotations;
      });
    });

    void it('refuses a revision whose HMAC an editor changed or removed', async () => {
      const name = point.handle ?? '';
      const hmac = point.integrity?.hmac ?? '';
      await tamper(name, (secret) => {
        secret.metadata.annotations['deploy-agent.dev/hmac-sha256'] = hmac.replace(/^./, (c) =>
          c === 'a' ? 'b' : 'a',
        );
      });
      await refusedRestore(point, /its HMAC does not verify/);
      await tamper(name, (secret) => {
        delete secret.metadata.annotations['deploy-agent.dev/hmac-sha256'];
        delete secret.metadata.annotations['deploy-agent.dev/key-id'];
      });
      await refusedRestore(point, /it carries no HMAC/);
      // Without a recorded HMAC (a run from before revisions were signed) an unsigned revision is refused all the same.
      await refusedRestore({ ...point, integrity: undefined }, /it carries no HMAC/);
      await tamper(name, (secret) => {
        secret.metadata.annotations['deploy-agent.dev/hmac-sha256'] = hmac;
        secret.metadata.annotations['deploy-agent.dev/key-id'] = point.integrity?.keyId ?? '';
      });
      assert.equal((await verifyRelease(v2(), point)).consistent, false, 'back as it was: readable again');
    });

    void it('refuses a revision signed by the worker that is not the one the history recorded', async () => {
      // The editor deletes the rollback point; the next one the worker takes gets its name, validly signed.
      await editor.deleteNamespacedSecret({ name: point.handle ?? '', namespace: INTEGRITY });
      const other = await kubernetesDriver(v2()).snapshot(deploymentId());
      assert.equal(other.handle, point.handle);
      assert.notEqual(other.integrity?.hmac, point.integrity?.hmac);
      await refusedRestore(point, /its HMAC differs from the one the history recorded/);
      point = other;
    });

    /** A revision as the worker would sign it, holding `entries`: what a key holder alone could write. */
    async function signedRevision(revision: number, entries: unknown[]): Promise<ReleaseState> {
      const name = `deploy-agent.web-shop.production.v${revision}`;
      const json = JSON.stringify({
        format: 1,
        service: 'web-shop',
        environment: 'production',
        revision,
        takenBy: deploymentId(),
        takenAt: new Date().toISOString(),
        present: true,
        running: false,
        configHash: 'sha256:0',
        entries,
      });
      const integrity = signRevision(keyRingFromEnv(), { namespace: INTEGRITY, name, content: json });
      await admin.createNamespacedSecret({
        namespace: INTEGRITY,
        body: {
          metadata: {
            name,
            labels: {
              'deploy-agent.dev/snapshot-service': 'web-shop',
              'deploy-agent.dev/snapshot-environment': 'production',
              'deploy-agent.dev/revision': String(revision),
            },
            annotations: {
              'deploy-agent.dev/content-sha256': sha256(json),
              'deploy-agent.dev/hmac-sha256': integrity.hmac,
              'deploy-agent.dev/key-id': integrity.keyId,
            },
          },
          type: 'deploy-agent.dev/release-snapshot',
          data: { release: gzipSync(json).toString('base64') },
        },
      });
      return { present: true, running: false, handle: name, integrity };
    }
    const configMapEntry = (namespace: string, name = 'web-shop-config') => {
      const object = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { LOG_LEVEL: 'x' } };
      return { apiVersion: 'v1', kind: 'ConfigMap', namespace, name, hash: sha256(JSON.stringify(object)), object };
    };

    void it('refuses a revision with an entry outside the namespace or of a kind restore may not write', async () => {
      await admin.createNamespace({ body: { metadata: { name: 'elsewhere' } } });
      const outside = await signedRevision(90, [configMapEntry(INTEGRITY), configMapEntry('elsewhere')]);
      await refusedRestore(
        outside,
        /ConfigMap\/elsewhere\/web-shop-config is outside the environment's namespace integrity/,
      );
      await assert.rejects(admin.readNamespacedConfigMap({ name: 'web-shop-config', namespace: 'elsewhere' }));

      const binding = {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'web-shop', namespace: INTEGRITY },
        subjects: [{ kind: 'ServiceAccount', name: 'editor', namespace: INTEGRITY }],
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
      };
      const grants = await signedRevision(91, [
        configMapEntry(INTEGRITY),
        {
          apiVersion: binding.apiVersion,
          kind: binding.kind,
          namespace: INTEGRITY,
          name: 'web-shop',
          hash: 'x',
          object: binding,
        },
      ]);
      await refusedRestore(
        grants,
        /RoleBinding\/integrity\/web-shop: kind RoleBinding\.rbac\.authorization\.k8s\.io is not one restore may write/,
      );
    });
  });

  describe('adoption', () => {
    const unowned = { metadata: { name: 'web-shop-config' }, data: { OWNER: 'someone else' } };

    void it('apply refuses to take over a ConfigMap no release owns, changing nothing; validation says so first', async () => {
      const target = targetIn(ADOPT);
      await admin.createNamespacedConfigMap({ namespace: ADOPT, body: unowned });
      const report = await inspectKubernetesEnvironment(target, []);
      assert.equal(report.problems.length, 1, report.problems.join('\n'));
      assert.match(
        report.problems[0] ?? '',
        /^ConfigMap\/adopt\/web-shop-config exists and no release of web-shop in production owns it/,
      );
      const before = await versions(ADOPT);
      const message = await refusal(
        applyRelease({ target, deploymentId: deploymentId(), version: '1.0.0', image: image('a') }),
      );
      assert.match(
        message,
        /ConfigMap\/adopt\/web-shop-config exists and no release .* kubernetes\.adoptExisting for production; nothing was applied$/,
      );
      assert.deepEqual(await versions(ADOPT), before, 'no object of the release was applied, the ConfigMap untouched');
      const config = await admin.readNamespacedConfigMap({ name: 'web-shop-config', namespace: ADOPT });
      assert.deepEqual(config.data, unowned.data);
      assert.ok(!config.metadata?.managedFields?.some((m) => m.manager === 'deploy-agent'));
    });

    void it('takes it over when the policy allows adopting, and marks what it owns', async () => {
      const target = targetIn(ADOPT, { adoptExisting: true });
      assert.deepEqual((await inspectKubernetesEnvironment(target, [])).problems, []);
      await applyRelease({ target, deploymentId: deploymentId(), version: '1.0.0', image: image('a') });
      const config = await admin.readNamespacedConfigMap({ name: 'web-shop-config', namespace: ADOPT });
      assert.equal(config.data?.LOG_LEVEL, 'info');
      assert.equal(config.metadata?.annotations?.['deploy-agent.dev/owner'], 'web-shop.production');
      assert.equal(config.metadata?.annotations?.['deploy-agent.dev/owner-uid'], config.metadata?.uid);
      // Owned now: the next deploy needs no permission to adopt.
      await applyRelease({
        target: targetIn(ADOPT),
        deploymentId: deploymentId(),
        version: '1.0.1',
        image: image('a'),
      });
    });
  });

  describe('prune', () => {
    let dir: string;
    // As admin: the Role of the example cannot delete PVCs at all, and a wrong delete must be able to succeed here.
    const target = () => targetIn(PRUNE, { kubeconfig: plane?.kubeconfigPath, manifestsDir: dir });
    const extra = (kind: string, name: string, annotations = '', spec = '') =>
      `apiVersion: v1\nkind: ${kind}\nmetadata:\n  name: ${name}\n${annotations}${spec}`;
    const pvc = extra(
      'PersistentVolumeClaim',
      'web-shop-data',
      '',
      'spec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n',
    );

    before(async () => {
      dir = path.join(workDir, 'prune-release');
      await cp(manifests('web-shop'), dir, { recursive: true });
      await writeFile(
        path.join(dir, 'extra.yaml'),
        [
          pvc,
          extra('ConfigMap', 'web-shop-kept', '  annotations:\n    deploy-agent.dev/resource-policy: keep\n'),
          extra('ConfigMap', 'web-shop-dropped'),
          extra('ConfigMap', 'web-shop-recreated'),
        ].join('---\n'),
      );
      await applyRelease({ target: target(), deploymentId: deploymentId(), version: '1.0.0', image: image('a') });
    });

    void it('never deletes a PVC or an object annotated to be kept, nor a same-named object someone recreated', async () => {
      // Someone deletes one object of the release and creates it again, copying what it carried, labels included.
      const original = await admin.readNamespacedConfigMap({ name: 'web-shop-recreated', namespace: PRUNE });
      await admin.deleteNamespacedConfigMap({ name: 'web-shop-recreated', namespace: PRUNE });
      const recreated = await admin.createNamespacedConfigMap({
        namespace: PRUNE,
        body: {
          metadata: {
            name: 'web-shop-recreated',
            labels: original.metadata?.labels,
            annotations: original.metadata?.annotations,
          },
          data: { MINE: 'yes' },
        },
      });
      assert.notEqual(recreated.metadata?.uid, original.metadata?.uid);

      // The next release holds none of them.
      await rm(path.join(dir, 'extra.yaml'));
      await applyRelease({ target: target(), deploymentId: deploymentId(), version: '1.1.0', image: image('a') });
      await assert.rejects(
        admin.readNamespacedConfigMap({ name: 'web-shop-dropped', namespace: PRUNE }),
        'an object the release dropped is pruned',
      );
      await admin.readNamespacedPersistentVolumeClaim({ name: 'web-shop-data', namespace: PRUNE });
      await admin.readNamespacedConfigMap({ name: 'web-shop-kept', namespace: PRUNE });
      const still = await admin.readNamespacedConfigMap({ name: 'web-shop-recreated', namespace: PRUNE });
      assert.equal(still.metadata?.uid, recreated.metadata?.uid);
      assert.equal(still.data?.MINE, 'yes');
    });

    void it('restore leaves a PVC the failed release added, and verification names it as kept', async () => {
      const id = deploymentId();
      const point = await kubernetesDriver(target()).snapshot(id);
      await writeFile(path.join(dir, 'pvc.yaml'), pvc.replace('web-shop-data', 'web-shop-new-data'));
      await applyRelease({ target: target(), deploymentId: id, version: '1.2.0', image: image('a') });
      await admin.readNamespacedPersistentVolumeClaim({ name: 'web-shop-new-data', namespace: PRUNE });
      await restoreRelease({ target: target(), to: { ...point, running: false } });
      await admin.readNamespacedPersistentVolumeClaim({ name: 'web-shop-new-data', namespace: PRUNE });
      const report = await verifyRelease(target(), point);
      const kept = report.checks.find((c) => c.field === 'PersistentVolumeClaim/web-shop-new-data');
      assert.equal(kept?.equal, true, JSON.stringify(report.checks));
      assert.match(kept?.actual ?? '', /^kept: a PersistentVolumeClaim holds data/);
      await rm(path.join(dir, 'pvc.yaml'));
    });
  });

  void it('refuses a manifest whose name Kubernetes would refuse, naming the file and the field, changing nothing', async () => {
    const dir = path.join(workDir, 'bad-name');
    await cp(manifests('web-shop'), dir, { recursive: true });
    await writeFile(
      path.join(dir, 'bad.yaml'),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ../../secrets/x\n',
    );
    const target = targetIn(ADOPT, { manifestsDir: dir });
    const before = await versions(ADOPT);
    const attempts: (() => Promise<unknown>)[] = [
      () => inspectKubernetesEnvironment(target, []),
      () => dryRunRelease(target, image('a')),
      () => applyRelease({ target, deploymentId: deploymentId(), version: '9.0.0', image: image('a') }),
    ];
    for (const attempt of attempts)
      assert.match(
        await refusal(attempt()),
        /^bad\.yaml document 1: ConfigMap metadata\.name: expected a DNS-1123 subdomain.*got "\.\.\/\.\.\/secrets\/x"$/,
      );
    assert.deepEqual(await versions(ADOPT), before);
  });
});
