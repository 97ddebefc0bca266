import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import { autoscaledTargets, configurationOf } from '../../activities/kubernetes/autoscaling.js';
import {
  configuredEntries,
  hashObject,
  managedFields,
  projectOnto,
  releaseHash,
} from '../../activities/kubernetes/objects.js';
import type { SnapshotEntry } from '../../domain/kubernetes.js';

/** A Deployment as the API server returns it: configuration plus everything the server and controllers filled in. */
function liveDeployment(uid = '5d3c0b7e-1111-4c1f-9a0e-2b6f3f1d9a01', resourceVersion = '48213'): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web-shop',
      namespace: 'shop',
      uid,
      resourceVersion,
      generation: 3,
      creationTimestamp: '2026-01-01T00:00:00Z',
      managedFields: [{ manager: 'deploy-agent', operation: 'Apply' }],
      labels: { 'app.kubernetes.io/name': 'web-shop' },
      annotations: {
        'deployment.kubernetes.io/revision': '3',
        'kubectl.kubernetes.io/last-applied-configuration': '{}',
        'deploy-agent.dev/version': '1.4.2',
      },
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'web-shop' } },
      template: {
        metadata: { creationTimestamp: null, labels: { 'app.kubernetes.io/name': 'web-shop' } },
        spec: { containers: [{ name: 'web', image: '127.0.0.1:5000/web-shop:1.4.2' }] },
      },
    },
    status: { observedGeneration: 3, replicas: 2, availableReplicas: 2 },
  };
}

describe('managed fields of a live object', () => {
  it('keeps the configuration and drops status, server metadata and server annotations', () => {
    assert.deepEqual(managedFields(liveDeployment()), {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'web-shop',
        namespace: 'shop',
        labels: { 'app.kubernetes.io/name': 'web-shop' },
        annotations: { 'deploy-agent.dev/version': '1.4.2' },
      },
      spec: {
        replicas: 2,
        selector: { matchLabels: { 'app.kubernetes.io/name': 'web-shop' } },
        template: {
          metadata: { labels: { 'app.kubernetes.io/name': 'web-shop' } },
          spec: { containers: [{ name: 'web', image: '127.0.0.1:5000/web-shop:1.4.2' }] },
        },
      },
    });
  });

  it('drops every kind of server metadata', () => {
    const live = liveDeployment();
    Object.assign(live.metadata, {
      deletionTimestamp: '2026-01-02T00:00:00Z',
      deletionGracePeriodSeconds: 30,
      selfLink: '/apis/apps/v1/namespaces/shop/deployments/web-shop',
      ownerReferences: [{ kind: 'Thing', name: 'owner' }],
      finalizers: ['example.com/cleanup'],
      generateName: 'web-',
    });
    assert.deepEqual(Object.keys(managedFields(live).metadata).sort(), ['annotations', 'labels', 'name', 'namespace']);
  });

  it('drops annotations altogether when only server annotations were there', () => {
    const live = liveDeployment();
    live.metadata.annotations = { 'deployment.kubernetes.io/revision': '7' };
    assert.equal('annotations' in managedFields(live).metadata, false);
  });

  it('gives equal hashes for the same configuration recreated with new server metadata', () => {
    const before = hashObject(managedFields(liveDeployment()));
    const recreated = liveDeployment('0a9e7d6c-2222-4c1f-9a0e-2b6f3f1d9a02', '90001');
    assert.equal(hashObject(managedFields(recreated)), before);
    const changed = liveDeployment();
    (changed.spec as { replicas: number }).replicas = 3;
    assert.notEqual(hashObject(managedFields(changed)), before);
  });

  it('drops the cluster IPs a Service was allocated and keeps what was configured', () => {
    const service: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web-shop', namespace: 'shop', uid: 'u' },
      spec: {
        clusterIP: '10.96.12.34',
        clusterIPs: ['10.96.12.34'],
        selector: { app: 'web-shop' },
        ports: [{ port: 80, targetPort: 8080 }],
      },
      status: { loadBalancer: {} },
    };
    assert.deepEqual(managedFields(service), {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web-shop', namespace: 'shop' },
      spec: { selector: { app: 'web-shop' }, ports: [{ port: 80, targetPort: 8080 }] },
    });
  });

  it('keeps clusterIP None: a headless Service stays headless when it is restored', () => {
    const headless: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web-shop-pods', namespace: 'shop' },
      spec: { clusterIP: 'None', clusterIPs: ['None'], selector: { app: 'web-shop' } },
    };
    assert.deepEqual(managedFields(headless).spec, { clusterIP: 'None', selector: { app: 'web-shop' } });
  });

  it('drops the volume a claim was bound to', () => {
    const claim: KubeObject = {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'data', namespace: 'shop' },
      spec: { accessModes: ['ReadWriteOnce'], volumeName: 'pvc-0a9e7d6c' },
      status: { phase: 'Bound' },
    };
    assert.deepEqual(managedFields(claim).spec, { accessModes: ['ReadWriteOnce'] });
  });

  it('keeps fields of other kinds that share the names of allocated ones', () => {
    const config: KubeObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'c' },
      spec: { clusterIP: 'configured', volumeName: 'configured' },
    };
    assert.deepEqual(managedFields(config).spec, { clusterIP: 'configured', volumeName: 'configured' });
  });

  it('copes with a Service without a spec', () => {
    const bare: KubeObject = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } };
    assert.deepEqual(managedFields(bare), bare);
  });

  it('drops null creation timestamps at any depth and keeps set ones below the metadata', () => {
    const cronJob: KubeObject = {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'nightly', creationTimestamp: null },
      spec: {
        jobTemplate: {
          metadata: { creationTimestamp: null },
          spec: { template: { metadata: { creationTimestamp: null, labels: { a: 'b' } } } },
        },
        list: [{ creationTimestamp: null, keep: true }, { creationTimestamp: 'configured' }],
      },
    };
    assert.deepEqual(managedFields(cronJob), {
      apiVersion: 'batch/v1',
      kind: 'CronJob',
      metadata: { name: 'nightly' },
      spec: {
        jobTemplate: { metadata: {}, spec: { template: { metadata: { labels: { a: 'b' } } } } },
        list: [{ keep: true }, { creationTimestamp: 'configured' }],
      },
    });
  });

  it('leaves the live object it was given unchanged', () => {
    const live = liveDeployment();
    const copy = structuredClone(live);
    managedFields(live);
    assert.deepEqual(live, copy);
  });
});

describe('hashes of objects and releases', () => {
  it('hashes objects independently of key order', () => {
    assert.equal(hashObject({ a: 1, b: { c: 2, d: [1, 2] } }), hashObject({ b: { d: [1, 2], c: 2 }, a: 1 }));
    assert.notEqual(hashObject({ d: [1, 2] }), hashObject({ d: [2, 1] }));
    assert.match(hashObject({}), /^sha256:[0-9a-f]{64}$/);
  });

  it('hashes a release by its present objects, in any order', () => {
    const entry = (name: string, hash: string, present = true): SnapshotEntry => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      namespace: 'shop',
      name,
      hash,
      ...(present ? { object: { name } } : {}),
    });
    const release = releaseHash([entry('a', 'sha256:1'), entry('b', 'sha256:2')]);
    assert.equal(releaseHash([entry('b', 'sha256:2'), entry('a', 'sha256:1')]), release);
    assert.equal(releaseHash([entry('a', 'sha256:1'), entry('b', 'sha256:2'), entry('c', 'absent', false)]), release);
    assert.notEqual(releaseHash([entry('a', 'sha256:1'), entry('b', 'sha256:3')]), release);
  });
});

describe('configuration of a workload an autoscaler of the release scales', () => {
  const autoscaler = (scaleTargetRef: Record<string, unknown>, namespace = 'shop'): KubeObject => ({
    apiVersion: 'autoscaling/v2',
    kind: 'HorizontalPodAutoscaler',
    metadata: { name: 'web-shop', namespace },
    spec: { scaleTargetRef, minReplicas: 1, maxReplicas: 6 },
  });
  const hpa = autoscaler({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web-shop' });
  const withReplicas = (replicas: number, image = '127.0.0.1:5000/web-shop:1.4.2'): KubeObject => {
    const live = liveDeployment();
    (live.spec as { replicas: number }).replicas = replicas;
    (live.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0]!.image =
      image;
    return managedFields(live);
  };

  it('finds the workloads the autoscalers among the objects scale, by group, kind, namespace and name', () => {
    const targets = autoscaledTargets([
      hpa,
      autoscaler({ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db' }),
      undefined,
      managedFields(liveDeployment()),
    ]);
    assert.deepEqual([...targets].sort(), ['Deployment.apps/shop/web-shop', 'StatefulSet.apps/shop/db']);
    const scaled = (ref: Record<string, unknown>, namespace?: string) =>
      configurationOf(withReplicas(3), autoscaledTargets([autoscaler(ref, namespace)])).spec;
    // Another name, another namespace, another group, or no apiVersion (the core group): not this Deployment.
    for (const [ref, namespace] of [
      [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'other' }, 'shop'],
      [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web-shop' }, 'elsewhere'],
      [{ apiVersion: 'example.com/v1', kind: 'Deployment', name: 'web-shop' }, 'shop'],
      [{ kind: 'Deployment', name: 'web-shop' }, 'shop'],
    ] as const)
      assert.equal((scaled(ref, namespace) as { replicas?: number }).replicas, 3, JSON.stringify([ref, namespace]));
    // Another version of the same group names the same Deployment.
    const later = scaled({ apiVersion: 'apps/v2', kind: 'Deployment', name: 'web-shop' });
    assert.equal('replicas' in (later as object), false);
  });

  it('leaves out the replica count and keeps everything else, without changing the object given', () => {
    const managed = withReplicas(3);
    const copy = structuredClone(managed);
    const configuration = configurationOf(managed, autoscaledTargets([hpa]));
    assert.deepEqual(managed, copy);
    const { replicas, ...rest } = managed.spec as Record<string, unknown>;
    assert.equal(replicas, 3);
    assert.deepEqual(configuration, { ...managed, spec: rest });
    assert.equal(configurationOf(managed, new Set()), managed, 'not autoscaled: the managed fields as they are');
    assert.deepEqual(configurationOf(hpa, autoscaledTargets([hpa])), hpa, 'the autoscaler keeps its own fields');
  });

  it('hashes equal at any replica count the autoscaler sets, and unequal when the configuration changes', () => {
    const autoscaled = autoscaledTargets([hpa]);
    const hash = (object: KubeObject, targets = autoscaled) => hashObject(configurationOf(object, targets));
    assert.equal(hash(withReplicas(5)), hash(withReplicas(2)));
    assert.notEqual(hash(withReplicas(2, '127.0.0.1:5000/web-shop:1.4.3')), hash(withReplicas(2)));
    assert.notEqual(hash(withReplicas(5), new Set()), hash(withReplicas(2), new Set()), 'without an autoscaler');
  });

  it('brings an entry stored with its replica count to the projection of the live object', () => {
    const entry = (object: KubeObject): SnapshotEntry => ({
      apiVersion: object.apiVersion,
      kind: object.kind,
      namespace: 'shop',
      name: object.metadata.name,
      hash: hashObject(object),
      object,
    });
    // As revisions were stored before: the hash of every managed field, the replica count included.
    const absent: SnapshotEntry = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      namespace: 'shop',
      name: 'gone',
      hash: 'absent',
    };
    const stored = [entry(withReplicas(2)), entry(hpa), absent];
    const autoscaled = autoscaledTargets(stored.map((e) => e.object));
    const read = configuredEntries(stored, autoscaled);
    const live = configuredEntries([entry(withReplicas(4))], autoscaled);
    assert.equal(read[0]!.hash, live[0]!.hash);
    assert.notEqual(read[0]!.hash, stored[0]!.hash);
    assert.equal('replicas' in (read[0]!.object!.spec as object), false);
    assert.deepEqual(read[1], stored[1], 'what no autoscaler scales reads as it was stored');
    assert.deepEqual(read[2], stored[2], 'an absent entry stays absent');
    assert.equal(releaseHash(read), releaseHash(live.concat(read.slice(1))));
    assert.deepEqual(configuredEntries(stored, new Set()), stored, 'a revision without an autoscaler reads as stored');
  });
});

describe('what a restore wrote, read back from a live object', () => {
  const written = { metadata: { name: 'web', labels: { app: 'web' } }, data: { LOG_LEVEL: 'info' }, list: [1, 2] };

  it('leaves out what other managers added, level by level', () => {
    const live = {
      metadata: { name: 'web', labels: { app: 'web', team: 'shop' }, annotations: { audited: 'yes' } },
      data: { LOG_LEVEL: 'info' },
      list: [1, 2],
    };
    assert.deepEqual(projectOnto(live, written), written);
  });

  it('keeps what changed or disappeared, and compares lists whole', () => {
    const changed = { metadata: { name: 'web', labels: {} }, data: { LOG_LEVEL: 'debug' }, list: [1, 2, 3] };
    assert.deepEqual(projectOnto(changed, written), changed);
    assert.notEqual(hashObject(projectOnto(changed, written)), hashObject(written));
  });
});
