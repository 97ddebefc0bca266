import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import { hashObject, managedFields, releaseHash } from '../../activities/kubernetes/objects.js';
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
