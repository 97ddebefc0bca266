import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import {
  ANNOTATION,
  LABEL,
  byApplyOrder,
  idOf,
  labelValue,
  loadManifests,
  prepare,
  refOf,
  repositoryOf,
  type ObjectRef,
} from '../../activities/kubernetes/manifests.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import type { PinnedImage } from '../../domain/release.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));

const target: KubernetesTarget = {
  kind: 'kubernetes',
  service: 'web-shop',
  environment: 'staging',
  namespace: 'shop',
  manifestsDir: join(FIXTURES, 'web-shop'),
  imageRepository: '127.0.0.1:5000/web-shop',
  historyLimit: 5,
  fieldManager: 'deploy-agent',
};

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const image: PinnedImage = { reference: `127.0.0.1:5000/web-shop@${DIGEST}`, digest: DIGEST };
const DEPLOYMENT_ID = 'web-shop.staging.0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';

function deployment(containers: Record<string, unknown>[], initContainers: Record<string, unknown>[] = []) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web-shop', namespace: 'shop', labels: { 'app.kubernetes.io/name': 'web-shop' } },
    spec: { replicas: 2, template: { metadata: {}, spec: { initContainers, containers } } },
  } satisfies KubeObject;
}

const imagesOf = (object: KubeObject): unknown[] => {
  const spec = (object.spec as { template: { spec: Record<string, { image?: unknown }[]> } }).template.spec;
  return [...(spec.initContainers ?? []), ...(spec.containers ?? [])].map((c) => c.image);
};

describe('image references', () => {
  it('names the repository of an image without its tag or digest, keeping a registry port', () => {
    assert.equal(repositoryOf('127.0.0.1:5000/web-shop:1.2.3'), '127.0.0.1:5000/web-shop');
    assert.equal(repositoryOf(`127.0.0.1:5000/web-shop@${DIGEST}`), '127.0.0.1:5000/web-shop');
    assert.equal(repositoryOf(`127.0.0.1:5000/web-shop:1.2.3@${DIGEST}`), '127.0.0.1:5000/web-shop');
    assert.equal(repositoryOf('127.0.0.1:5000/web-shop'), '127.0.0.1:5000/web-shop');
    assert.equal(repositoryOf('nginx:1.27'), 'nginx');
    assert.equal(repositoryOf('registry.example.com/team/web'), 'registry.example.com/team/web');
  });
});

describe('label values', () => {
  it('keeps a value that fits a label as it is', () => {
    assert.equal(labelValue(DEPLOYMENT_ID), DEPLOYMENT_ID);
    assert.equal(labelValue('1.4.2'), '1.4.2');
    assert.equal(labelValue(''), '');
  });
  it('keeps the last 63 characters of a long value, starting at a letter or digit', () => {
    const long = `${'a'.repeat(40)}.${'-'.repeat(3)}${'b'.repeat(60)}`;
    assert.equal(labelValue(long), 'b'.repeat(60));
    const tail = labelValue(`${'x'.repeat(20)}${'y'.repeat(63)}`);
    assert.equal(tail, 'y'.repeat(63));
  });
  it('gives nothing for a value a label cannot hold', () => {
    assert.equal(labelValue('1.0.0-'), undefined);
    assert.equal(labelValue('1.0.0+build'), undefined);
    assert.equal(labelValue('has space'), undefined);
  });
});

describe('preparing a release', () => {
  it('pins every container of the service repository to the digest and counts them', () => {
    const web = deployment(
      [
        { name: 'web', image: '127.0.0.1:5000/web-shop:latest' },
        { name: 'envoy', image: 'envoyproxy/envoy:v1.31' },
        { name: 'worker', image: '127.0.0.1:5000/web-shop-worker:latest' },
        { name: 'other-registry', image: '127.0.0.1:5001/web-shop:latest' },
      ],
      [{ name: 'migrate', image: `127.0.0.1:5000/web-shop@sha256:${'0'.repeat(64)}` }],
    );
    const { objects, imageUses } = prepare(target, [web], image);
    assert.equal(imageUses, 2);
    assert.deepEqual(imagesOf(objects[0]!), [
      image.reference,
      image.reference,
      'envoyproxy/envoy:v1.31',
      '127.0.0.1:5000/web-shop-worker:latest',
      '127.0.0.1:5001/web-shop:latest',
    ]);
  });

  it('pins the containers of Pods and CronJobs too', () => {
    const container = { name: 'web', image: '127.0.0.1:5000/web-shop' };
    const pod: KubeObject = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p' },
      spec: { containers: [container] },
    };
    const cronJob: KubeObject = {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'c' },
      spec: { jobTemplate: { spec: { template: { spec: { containers: [container] } } } } },
    };
    const { objects, imageUses } = prepare(target, [pod, cronJob], image);
    assert.equal(imageUses, 2);
    assert.equal((objects[0]!.spec as { containers: { image: string }[] }).containers[0]!.image, image.reference);
  });

  it('counts no use when no container runs the service image', () => {
    const web = deployment([{ name: 'web', image: 'nginx:1.27' }, { name: 'no-image' }]);
    const config: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { image: 'x' } };
    const { objects, imageUses } = prepare(target, [web, config], image);
    assert.equal(imageUses, 0);
    assert.deepEqual(imagesOf(objects[0]!), ['nginx:1.27', undefined]);
  });

  it('labels every object as managed for the service and environment, keeping its own labels', () => {
    const config: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c', namespace: 'shop', labels: { team: 'payments', [LABEL.managedBy]: 'helm' } },
    };
    const [prepared] = prepare(target, [config], image).objects;
    assert.deepEqual(prepared!.metadata, {
      name: 'c',
      namespace: 'shop',
      labels: {
        team: 'payments',
        [LABEL.managedBy]: 'deploy-agent',
        [LABEL.service]: 'web-shop',
        [LABEL.environment]: 'staging',
      },
      annotations: {},
    });
  });

  it('stamps the deploying deployment and version in annotations and, where they fit, labels', () => {
    const web = deployment([{ name: 'web', image: '127.0.0.1:5000/web-shop:latest' }]);
    web.metadata = { ...web.metadata, annotations: { owner: 'team-a' } } as typeof web.metadata;
    const [prepared] = prepare(target, [web], image, { deploymentId: DEPLOYMENT_ID, version: '1.4.2' }).objects;
    const { labels, annotations } = prepared!.metadata as Record<string, Record<string, string>>;
    assert.deepEqual(annotations, {
      owner: 'team-a',
      [ANNOTATION.deploymentId]: DEPLOYMENT_ID,
      [ANNOTATION.version]: '1.4.2',
    });
    assert.equal(labels![LABEL.deploymentId], DEPLOYMENT_ID);
    assert.equal(labels![LABEL.version], '1.4.2');
    assert.equal(labels!['app.kubernetes.io/name'], 'web-shop');
  });

  it('keeps a long deployment id whole in the annotation and its tail in the label', () => {
    const longId = `a-service-with-a-rather-long-name.an-environment-name.0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b`;
    const [prepared] = prepare(target, [deployment([])], image, { deploymentId: longId, version: '2.0.0-' }).objects;
    const { labels, annotations } = prepared!.metadata as Record<string, Record<string, string>>;
    assert.equal(annotations![ANNOTATION.deploymentId], longId);
    assert.equal(labels![LABEL.deploymentId], longId.slice(-63));
    assert.equal(annotations![ANNOTATION.version], '2.0.0-');
    assert.equal(LABEL.version in labels!, false, 'a version a label cannot hold is in the annotation only');
  });

  it('adds no deployment labels or annotations without a stamp', () => {
    const [prepared] = prepare(target, [deployment([])], image).objects;
    const { labels, annotations } = prepared!.metadata as Record<string, Record<string, string>>;
    assert.deepEqual(annotations, {});
    assert.equal(LABEL.deploymentId in labels!, false);
    assert.equal(LABEL.version in labels!, false);
  });

  it('keeps the namespace and leaves the objects it was given unchanged', () => {
    const web = deployment([{ name: 'web', image: '127.0.0.1:5000/web-shop:latest' }]);
    const before = structuredClone(web);
    const { objects } = prepare(target, [web], image, { deploymentId: DEPLOYMENT_ID, version: '1.0.0' });
    assert.deepEqual(web, before);
    assert.equal(objects[0]!.metadata.namespace, 'shop');
    assert.equal(objects[0]!.metadata.name, 'web-shop');
    assert.notEqual(objects[0], web);
  });
});

describe('object identity and apply order', () => {
  const ref = (kind: string, name: string, apiVersion = 'v1', namespace = 'shop'): ObjectRef => ({
    apiVersion,
    kind,
    namespace,
    name,
  });

  it('identifies an object by kind, API group, namespace and name, across versions of the group', () => {
    assert.equal(idOf(ref('Service', 'web')), 'Service./shop/web');
    assert.equal(idOf(ref('Deployment', 'web', 'apps/v1')), 'Deployment.apps/shop/web');
    assert.equal(idOf(ref('Deployment', 'web', 'apps/v1')), idOf(ref('Deployment', 'web', 'apps/v2')));
    assert.notEqual(
      idOf(ref('Ingress', 'web', 'networking.k8s.io/v1')),
      idOf(ref('Ingress', 'web', 'extensions/v1beta1')),
    );
    assert.notEqual(idOf(ref('Service', 'web')), idOf(ref('Service', 'web', 'v1', 'other')));
  });

  it('applies what others reference first, scaling and routing last, unknown kinds at the end, then by name', () => {
    const refs = [
      ref('Ingress', 'web', 'networking.k8s.io/v1'),
      ref('Widget', 'a', 'example.com/v1'),
      ref('Deployment', 'web', 'apps/v1'),
      ref('Service', 'web'),
      ref('ConfigMap', 'z-settings'),
      ref('HorizontalPodAutoscaler', 'web', 'autoscaling/v2'),
      ref('Secret', 'credentials'),
      ref('ConfigMap', 'a-settings'),
      ref('Deployment', 'api', 'apps/v1'),
      ref('ServiceAccount', 'web'),
      ref('NetworkPolicy', 'deny-all', 'networking.k8s.io/v1'),
    ];
    assert.deepEqual(
      refs.sort(byApplyOrder).map((r) => `${r.kind}/${r.name}`),
      [
        'NetworkPolicy/deny-all',
        'ServiceAccount/web',
        'Secret/credentials',
        'ConfigMap/a-settings',
        'ConfigMap/z-settings',
        'Service/web',
        'Deployment/api',
        'Deployment/web',
        'HorizontalPodAutoscaler/web',
        'Ingress/web',
        'Widget/a',
      ],
    );
  });
});

describe('loading release manifests', () => {
  let root: string;
  before(async () => (root = await mkdtemp(join(tmpdir(), 'manifests-test-'))));
  after(async () => rm(root, { recursive: true, force: true }));

  /** A fresh manifests directory holding `files` (paths relative to it). */
  async function release(files: Record<string, string>): Promise<KubernetesTarget> {
    const dir = await mkdtemp(join(root, 'release-'));
    for (const [name, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, name)), { recursive: true });
      await writeFile(join(dir, name), text);
    }
    return { ...target, manifestsDir: dir };
  }

  async function refusal(files: Record<string, string>): Promise<string> {
    const release_ = await release(files);
    try {
      await loadManifests(release_);
    } catch (error) {
      assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
      assert.equal(error.type, 'InvalidRelease');
      assert.equal(error.nonRetryable, true);
      return error.message.replaceAll(release_.manifestsDir, '<dir>');
    }
    assert.fail('expected the manifests to be refused');
  }

  const configMap = (name: string, extra = '') =>
    `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${extra}`;

  it('loads the example release in apply order, every object in the target namespace', async () => {
    const objects = await loadManifests(target);
    assert.deepEqual(
      objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`),
      [
        'Secret/shop/web-shop-secret',
        'ConfigMap/shop/web-shop-config',
        'Service/shop/web-shop',
        'Deployment/shop/web-shop',
      ],
    );
  });

  it('reads YAML and JSON files in subdirectories, expands Lists and skips empty documents and other files', async () => {
    const objects = await loadManifests(
      await release({
        'a.yaml': `${configMap('one')}---\n# only a comment\n---\n`,
        'nested/deeper/b.yml': configMap('two'),
        'c.json': JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'three' } }),
        'd.yaml': `apiVersion: v1\nkind: List\nitems:\n- ${JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'four' } })}\n`,
        'README.md': 'not a manifest',
        'e.yaml.orig': configMap('ignored'),
      }),
    );
    assert.deepEqual(
      objects.map((o) => refOf(o)),
      [
        { apiVersion: 'v1', kind: 'Secret', namespace: 'shop', name: 'three' },
        { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'shop', name: 'one' },
        { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'shop', name: 'two' },
        { apiVersion: 'v1', kind: 'Service', namespace: 'shop', name: 'four' },
      ],
    );
  });

  it('accepts an object naming the target namespace and drops any status it carries', async () => {
    const [object] = await loadManifests(
      await release({ 'a.yaml': configMap('one', '  namespace: shop\ndata:\n  k: v\nstatus:\n  phase: Ready\n') }),
    );
    assert.deepEqual(object, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'one', namespace: 'shop' },
      data: { k: 'v' },
    });
  });

  it('refuses a cluster-scoped kind, naming the file, the document and the object', async () => {
    assert.equal(
      await refusal({
        'app.yaml': `${configMap('one')}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n`,
      }),
      'app.yaml document 2: Namespace/shop is cluster-scoped; a release holds namespaced objects only',
    );
    assert.match(
      await refusal({
        'rbac.yaml': 'apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\n',
      }),
      /^rbac\.yaml document 1: ClusterRole\/reader is cluster-scoped/,
    );
  });

  it('refuses an object of another namespace', async () => {
    assert.equal(
      await refusal({ 'sub/app.yaml': configMap('one', '  namespace: billing\n') }),
      'sub/app.yaml document 1: ConfigMap/one is in namespace "billing", not shop',
    );
  });

  it('refuses the same object twice, in one file or across files and API versions', async () => {
    assert.equal(
      await refusal({ 'a.yaml': configMap('one'), 'b.yaml': configMap('one') }),
      'ConfigMap/shop/one appears twice in the release manifests',
    );
    const web = (apiVersion: string) => `apiVersion: ${apiVersion}\nkind: Deployment\nmetadata:\n  name: web\n`;
    assert.equal(
      await refusal({ 'a.yaml': `${web('apps/v1')}---\n${web('apps/v1beta2')}` }),
      'Deployment/shop/web appears twice in the release manifests',
    );
  });

  it('accepts objects of the same name and kind in different API groups', async () => {
    const objects = await loadManifests(
      await release({
        'a.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n',
        'b.yaml': 'apiVersion: example.org/v1\nkind: Widget\nmetadata:\n  name: w\n',
      }),
    );
    assert.equal(objects.length, 2);
  });

  it('refuses YAML that does not parse, naming the file and document', async () => {
    assert.match(
      await refusal({ 'ok.yaml': configMap('one'), 'bad.yaml': `${configMap('two')}---\nkey: [unclosed\n` }),
      /^bad\.yaml document 2: \S/,
    );
    assert.match(await refusal({ 'dup.yaml': `${configMap('one')}kind: Secret\n` }), /^dup\.yaml document 1: \S/);
  });

  it('refuses documents that are not Kubernetes objects or have no name', async () => {
    assert.equal(
      await refusal({ 'a.yaml': 'just a string\n' }),
      'a.yaml document 1: expected a Kubernetes object with apiVersion and kind',
    );
    assert.equal(
      await refusal({ 'a.yaml': 'kind: ConfigMap\nmetadata:\n  name: one\n' }),
      'a.yaml document 1: expected a Kubernetes object with apiVersion and kind',
    );
    assert.equal(
      await refusal({ 'a.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {}\n' }),
      'a.yaml document 1: ConfigMap has no metadata.name',
    );
    assert.equal(
      await refusal({ 'a.yaml': 'apiVersion: v1\nkind: List\nitems:\n  - 42\n' }),
      'a.yaml document 1: expected a Kubernetes object with apiVersion and kind',
    );
  });

  it('reads many files ahead of parsing, yet loads all and names the first broken file', async () => {
    const files = Object.fromEntries(
      Array.from({ length: 100 }, (_, n) => [`f-${String(n).padStart(3, '0')}.yaml`, configMap(`c-${n}`)]),
    );
    assert.equal((await loadManifests(await release(files))).length, 100);
    assert.match(
      await refusal({ ...files, 'f-050.yaml': 'key: [unclosed\n', 'f-090.yaml': 'just a string\n' }),
      /^f-050\.yaml document 1: \S/,
    );
  });

  it('refuses a directory without objects', async () => {
    assert.equal(
      await refusal({ 'empty.yaml': '# nothing here yet\n', 'notes.txt': configMap('one') }),
      'release manifests <dir> hold no objects',
    );
    assert.equal(await refusal({}), 'release manifests <dir> hold no objects');
  });

  it('refuses a directory that cannot be read', async () => {
    const missing = { ...target, manifestsDir: join(root, 'does-not-exist') };
    await assert.rejects(loadManifests(missing), (error: unknown) => {
      assert.ok(error instanceof ApplicationFailure);
      assert.equal(error.type, 'InvalidRelease');
      assert.match(error.message, /^release manifests .*does-not-exist cannot be read: ENOENT/);
      return true;
    });
  });
});
