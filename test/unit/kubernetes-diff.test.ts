import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { differingPaths } from '../../activities/kubernetes/diff.js';

function deployment(image: string, replicas = 2, env: Record<string, string>[] = []) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web-shop', namespace: 'shop', labels: { app: 'web-shop' } },
    spec: {
      replicas,
      template: {
        metadata: { labels: { app: 'web-shop' } },
        spec: {
          containers: [
            { name: 'web', image, env },
            { name: 'proxy', image: 'envoyproxy/envoy:v1.31' },
          ],
        },
      },
    },
  };
}

/** `{ a: { a: … { a: leaf } } }`, `levels` objects deep. */
function nested(levels: number, leaf: unknown): unknown {
  let value = leaf;
  for (let i = 0; i < levels; i++) value = { a: value };
  return value;
}

describe('differing paths', () => {
  it('finds nothing between identical values', () => {
    assert.deepEqual(differingPaths(deployment('web:1'), deployment('web:1')), []);
    assert.deepEqual(differingPaths('x', 'x'), []);
    assert.deepEqual(differingPaths(undefined, undefined), []);
    assert.deepEqual(differingPaths(null, null), []);
  });

  it('finds nothing between objects that differ only in key order', () => {
    assert.deepEqual(differingPaths({ a: 1, b: { c: 2, d: 3 } }, { b: { d: 3, c: 2 }, a: 1 }), []);
  });

  it('names a changed container image by its path through the pod template', () => {
    assert.deepEqual(differingPaths(deployment('web:1'), deployment('web:2')), [
      'spec.template.spec.containers[0].image',
    ]);
  });

  it('names every changed field, sorted by key', () => {
    const before = deployment('web:1', 2, [{ name: 'A', value: '1' }]);
    const after = deployment('web:2', 3, [{ name: 'A', value: '2' }]);
    assert.deepEqual(differingPaths(before, after), [
      'spec.replicas',
      'spec.template.spec.containers[0].env[0].value',
      'spec.template.spec.containers[0].image',
    ]);
  });

  it('names added and removed keys and array elements', () => {
    const before = deployment('web:1', 2, [{ name: 'A', value: '1' }]);
    const after = deployment('web:1', 2, [
      { name: 'A', value: '1' },
      { name: 'B', value: '2' },
    ]);
    (after.metadata.labels as Record<string, string>).tier = 'frontend';
    assert.deepEqual(differingPaths(before, after), [
      'metadata.labels.tier',
      'spec.template.spec.containers[0].env[1]',
    ]);
    assert.deepEqual(differingPaths(after, before), [
      'metadata.labels.tier',
      'spec.template.spec.containers[0].env[1]',
    ]);
  });

  it('names the field itself when its type changes', () => {
    assert.deepEqual(differingPaths({ data: { a: '1' } }, { data: 'text' }), ['data']);
    assert.deepEqual(differingPaths({ data: { a: '1' } }, { data: null }), ['data']);
    assert.deepEqual(differingPaths({ ports: [80] }, { ports: 80 }), ['ports']);
  });

  it('names the top level "." when whole values differ', () => {
    assert.deepEqual(differingPaths(1, 2), ['.']);
    assert.deepEqual(differingPaths({ a: 1 }, undefined), ['.']);
  });

  it('names array positions at the top level in brackets', () => {
    assert.deepEqual(differingPaths([1, 2, 3], [1, 5, 3]), ['[1]']);
  });

  it('goes no deeper than eight levels, naming the eighth', () => {
    assert.deepEqual(differingPaths(nested(8, 1), nested(8, 2)), ['a.a.a.a.a.a.a.a']);
    assert.deepEqual(differingPaths(nested(12, 1), nested(12, 2)), ['a.a.a.a.a.a.a.a']);
    assert.deepEqual(differingPaths(nested(7, { x: 1 }), nested(7, { x: 2 })), ['a.a.a.a.a.a.a.x']);
  });

  it('names only top-level fields when started one level short of the limit, as for Secrets', () => {
    const before = { data: { PASSWORD: 'czE=', USER: 'dQ==' }, type: 'Opaque' };
    const after = { data: { PASSWORD: 'czI=', USER: 'dQ==' }, type: 'Opaque' };
    assert.deepEqual(differingPaths(before, after, '', 7), ['data']);
    assert.deepEqual(differingPaths(before, after), ['data.PASSWORD']);
  });
});
