import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import { formatQuantity, parseQuantity, quotaProblems, releaseAmounts } from '../../activities/kubernetes/quota.js';

interface Container {
  name: string;
  image?: string;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
}

function deployment(name: string, replicas: number | undefined, containers: Container[], initContainers?: Container[]) {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'shop' },
    spec: {
      ...(replicas === undefined ? {} : { replicas }),
      template: { spec: { containers, ...(initContainers ? { initContainers } : {}) } },
    },
  } satisfies KubeObject;
}

function limitRange(name: string, limit: Record<string, Record<string, string>>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: { name, namespace: 'shop' },
    spec: { limits: [{ type: 'Container', ...limit }] },
  };
}

function quota(name: string, hard: Record<string, string>, used?: Record<string, string>): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: { name, namespace: 'shop' },
    spec: { hard },
    ...(used ? { status: { hard, used } } : {}),
  };
}

const MI = 2 ** 20;
const GI = 2 ** 30;

/** Floating-point sums of quantities such as 0.1 + 0.2 are compared to a millionth of a unit. */
function assertAmounts(actual: Record<string, number>, expected: Record<string, number>) {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const [key, value] of Object.entries(expected))
    assert.ok(Math.abs((actual[key] ?? Number.NaN) - value) < 1e-6, `${key}: expected ${value}, got ${actual[key]}`);
}

describe('Kubernetes quantities', () => {
  it('parses decimal, binary and milli suffixes, exponents and plain numbers', () => {
    assert.equal(parseQuantity('500m'), 0.5);
    assert.equal(parseQuantity('2'), 2);
    assert.equal(parseQuantity('1.5'), 1.5);
    assert.equal(parseQuantity('.5'), 0.5);
    assert.equal(parseQuantity('128Mi'), 128 * MI);
    assert.equal(parseQuantity('1Gi'), GI);
    assert.equal(parseQuantity('64Ki'), 65_536);
    assert.equal(parseQuantity('1.5Gi'), 1.5 * GI);
    assert.equal(parseQuantity('1k'), 1000);
    assert.equal(parseQuantity('1M'), 1e6);
    assert.equal(parseQuantity('1e3'), 1000);
    assert.equal(parseQuantity('1E'), 1e18);
    assert.equal(parseQuantity(' 250m '), 0.25);
    assert.equal(parseQuantity(3), 3);
  });

  it('gives nothing for values that are not quantities', () => {
    for (const value of ['', 'lots', '1 Gi', '1Qi', '1KiB', 'm', undefined, null, {}])
      assert.equal(parseQuantity(value), undefined, `parseQuantity(${JSON.stringify(value)})`);
  });

  it('formats CPU in millicores, memory in mebibytes and everything else as a count', () => {
    assert.equal(formatQuantity('requests.cpu', 1.5), '1500m');
    assert.equal(formatQuantity('cpu', 0.25), '250m');
    assert.equal(formatQuantity('limits.memory', 1.5 * GI), '1536Mi');
    assert.equal(formatQuantity('requests.memory', 100 * 1000 * 1000), '95.4Mi');
    assert.equal(formatQuantity('pods', 3), '3');
  });
});

describe('release amounts', () => {
  it('adds up the requests and limits of every container, times the replicas', () => {
    const web = deployment('web', 3, [
      { name: 'app', resources: { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: '1', memory: '256Mi' } } },
      {
        name: 'proxy',
        resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '200m', memory: '64Mi' } },
      },
    ]);
    const { total, problems } = releaseAmounts([web], []);
    assertAmounts(total, {
      pods: 3,
      'requests.cpu': 3 * 0.35,
      'limits.cpu': 3 * 1.2,
      'requests.memory': 3 * 192 * MI,
      'limits.memory': 3 * 320 * MI,
    });
    assert.deepEqual(problems, []);
  });

  it('counts one replica when a Deployment does not say, none when it says zero', () => {
    const container = { name: 'app', resources: { requests: { cpu: '1', memory: '1Gi' } } };
    assertAmounts(releaseAmounts([deployment('web', undefined, [container])], []).total, {
      pods: 1,
      'requests.cpu': 1,
      'limits.cpu': 0,
      'requests.memory': GI,
      'limits.memory': 0,
    });
    assertAmounts(releaseAmounts([deployment('web', 0, [container])], []).total, {
      pods: 0,
      'requests.cpu': 0,
      'limits.cpu': 0,
      'requests.memory': 0,
      'limits.memory': 0,
    });
  });

  it('counts a Pod once, a Job by its parallelism and a DaemonSet or CronJob not at all', () => {
    const resources = { requests: { cpu: '100m' } };
    const podSpec = { containers: [{ name: 'c', resources }] };
    const objects: KubeObject[] = [
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: podSpec },
      {
        apiVersion: 'batch/v1',
        kind: 'Job',
        metadata: { name: 'j' },
        spec: { parallelism: 4, template: { spec: podSpec } },
      },
      { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'd' }, spec: { template: { spec: podSpec } } },
      {
        apiVersion: 'batch/v1',
        kind: 'CronJob',
        metadata: { name: 'c' },
        spec: { jobTemplate: { spec: { template: { spec: podSpec } } } },
      },
    ];
    const { total } = releaseAmounts(objects, []);
    assert.equal(total.pods, 5);
    assert.ok(Math.abs((total['requests.cpu'] ?? 0) - 0.5) < 1e-9);
  });

  it('ignores objects without pods', () => {
    const config: KubeObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings' }, data: {} };
    assert.deepEqual(releaseAmounts([config], []), { total: {}, problems: [] });
  });

  it('uses a request equal to the limit when a container sets only its limit', () => {
    const web = deployment('web', 2, [{ name: 'app', resources: { limits: { cpu: '500m', memory: '1Gi' } } }]);
    assertAmounts(releaseAmounts([web], []).total, {
      pods: 2,
      'requests.cpu': 1,
      'limits.cpu': 1,
      'requests.memory': 2 * GI,
      'limits.memory': 2 * GI,
    });
  });

  it('fills missing requests and limits from the defaults of a LimitRange', () => {
    const defaults = limitRange('defaults', {
      default: { cpu: '500m', memory: '512Mi' },
      defaultRequest: { cpu: '100m', memory: '256Mi' },
    });
    const web = deployment('web', 2, [
      { name: 'bare' },
      { name: 'own', resources: { requests: { cpu: '300m', memory: '128Mi' }, limits: { cpu: '1', memory: '1Gi' } } },
    ]);
    assertAmounts(releaseAmounts([web], [defaults]).total, {
      pods: 2,
      'requests.cpu': 2 * (0.1 + 0.3),
      'limits.cpu': 2 * (0.5 + 1),
      'requests.memory': 2 * (256 + 128) * MI,
      'limits.memory': 2 * (512 + 1024) * MI,
    });
  });

  it('takes a limit set without a request as the request, as the API server does, before any LimitRange default', () => {
    const defaults = limitRange('defaults', { defaultRequest: { cpu: '500m' } });
    const web = deployment('web', 1, [{ name: 'limited', resources: { limits: { cpu: '1' } } }]);
    assertAmounts(releaseAmounts([web], [defaults]).total, {
      pods: 1,
      'requests.cpu': 1,
      'limits.cpu': 1,
      'requests.memory': 0,
      'limits.memory': 0,
    });
  });

  it('counts a plain init container only above what the pod runs after it, and a sidecar on top of it', () => {
    const cpu = (amount: string) => ({ resources: { requests: { cpu: amount }, limits: { cpu: amount } } });
    const plain = deployment('plain', 1, [{ name: 'app', ...cpu('1') }], [{ name: 'migrate', ...cpu('1') }]);
    assert.equal(releaseAmounts([plain], []).total['requests.cpu'], 1);
    const bigger = deployment('bigger', 1, [{ name: 'app', ...cpu('1') }], [{ name: 'migrate', ...cpu('3') }]);
    assert.equal(releaseAmounts([bigger], []).total['requests.cpu'], 3);
    const sidecar = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'with-sidecar', namespace: 'shop' },
      spec: {
        initContainers: [{ name: 'proxy', restartPolicy: 'Always', ...cpu('500m') }],
        containers: [{ name: 'app', ...cpu('1') }],
      },
    } satisfies KubeObject;
    assert.equal(releaseAmounts([sidecar], []).total['requests.cpu'], 1.5);
  });

  it('takes the defaults of the first LimitRange that has one and ignores Pod-type limits', () => {
    const podLimits: KubeObject = {
      apiVersion: 'v1',
      kind: 'LimitRange',
      metadata: { name: 'pods', namespace: 'shop' },
      spec: { limits: [{ type: 'Pod', max: { cpu: '1m' }, default: { cpu: '9' } }] },
    };
    const memoryOnly = limitRange('memory', { default: { memory: '64Mi' }, defaultRequest: { memory: '32Mi' } });
    const both = limitRange('both', {
      default: { cpu: '2', memory: '1Gi' },
      defaultRequest: { cpu: '1', memory: '512Mi' },
    });
    const { total, problems } = releaseAmounts(
      [deployment('web', 1, [{ name: 'app' }])],
      [podLimits, memoryOnly, both],
    );
    assertAmounts(total, {
      pods: 1,
      'requests.cpu': 1,
      'limits.cpu': 2,
      'requests.memory': 32 * MI,
      'limits.memory': 64 * MI,
    });
    assert.deepEqual(problems, []);
  });

  it('reports a container above the maximum of a LimitRange, naming object, container, amounts and range', () => {
    const range = limitRange('caps', { max: { cpu: '1', memory: '512Mi' } });
    const web = deployment('web', 1, [
      { name: 'app', resources: { limits: { cpu: '1500m', memory: '512Mi' } } },
      { name: 'fine', resources: { limits: { cpu: '1', memory: '256Mi' } } },
    ]);
    assert.deepEqual(releaseAmounts([web], [range]).problems, [
      'Deployment/shop/web container app: cpu 1500m exceeds the maximum 1000m of LimitRange/shop/caps',
    ]);
  });

  it('checks a container without a limit against the maximum by its request', () => {
    const range = limitRange('caps', { max: { memory: '1Gi' } });
    const web = deployment('web', 1, [{ name: 'app', resources: { requests: { memory: '2Gi' } } }]);
    assert.deepEqual(releaseAmounts([web], [range]).problems, [
      'Deployment/shop/web container app: memory 2048Mi exceeds the maximum 1024Mi of LimitRange/shop/caps',
    ]);
  });

  it('reports a request below the minimum of a LimitRange, and nothing for a container without a request', () => {
    const range = limitRange('floor', { min: { cpu: '100m' } });
    const web = deployment('web', 1, [
      { name: 'tiny', resources: { requests: { cpu: '50m' } } },
      { name: 'unset' },
      { name: 'enough', resources: { requests: { cpu: '100m' } } },
    ]);
    assert.deepEqual(releaseAmounts([web], [range]).problems, [
      'Deployment/shop/web container tiny: cpu 50m is below the minimum 100m of LimitRange/shop/floor',
    ]);
  });

  it('checks init containers against a LimitRange like the others', () => {
    const range = limitRange('caps', { max: { cpu: '1' } });
    const web = deployment(
      'web',
      1,
      [{ name: 'app', resources: { limits: { cpu: '1' } } }],
      [{ name: 'migrate', resources: { limits: { cpu: '2' } } }],
    );
    assert.deepEqual(releaseAmounts([web], [range]).problems, [
      'Deployment/shop/web container migrate: cpu 2000m exceeds the maximum 1000m of LimitRange/shop/caps',
    ]);
  });
});

describe('quota problems', () => {
  const needed = { pods: 4, 'requests.cpu': 2, 'limits.cpu': 4, 'requests.memory': 2 * GI, 'limits.memory': 4 * GI };

  it('finds nothing when every quota has room for the release', () => {
    const roomy = quota('roomy', { 'requests.cpu': '4', 'limits.memory': '8Gi', pods: '10' }, { 'requests.cpu': '1' });
    assert.deepEqual(quotaProblems([roomy], needed, {}), []);
  });

  it('accepts a release that needs exactly what is free', () => {
    const exact = quota('exact', { 'requests.cpu': '3', pods: '5' }, { 'requests.cpu': '1', pods: '1' });
    assert.deepEqual(quotaProblems([exact], needed, {}), []);
  });

  it('reports a quota without room, with what is needed, free, hard and used', () => {
    const tight = quota('tight', { 'requests.cpu': '2', 'requests.memory': '4Gi' }, { 'requests.cpu': '500m' });
    assert.deepEqual(quotaProblems([tight], needed, {}), [
      'ResourceQuota/shop/tight: requests.cpu would be exceeded: the release needs 2000m, 1500m is free (hard 2000m, used 500m)',
    ]);
  });

  it('counts what the release replaces as free', () => {
    const tight = quota('tight', { 'requests.cpu': '2' }, { 'requests.cpu': '1500m' });
    assert.equal(quotaProblems([tight], needed, {}).length, 1);
    assert.deepEqual(quotaProblems([tight], needed, { 'requests.cpu': 1.5 }), []);
    assert.equal(quotaProblems([tight], needed, { 'requests.cpu': 1 }).length, 1);
  });

  it('reads plain cpu and memory as requests, and count/pods as pods', () => {
    const shorthand = quota('shorthand', { cpu: '1', memory: '1Gi', 'count/pods': '3' }, { cpu: '0', memory: '0' });
    assert.deepEqual(quotaProblems([shorthand], needed, {}), [
      'ResourceQuota/shop/shorthand: cpu would be exceeded: the release needs 2000m, 1000m is free (hard 1000m, used 0m)',
      'ResourceQuota/shop/shorthand: memory would be exceeded: the release needs 2048Mi, 1024Mi is free (hard 1024Mi, used 0Mi)',
      'ResourceQuota/shop/shorthand: count/pods would be exceeded: the release needs 4, 3 is free (hard 3, used 0)',
    ]);
  });

  it('checks limits against limits quotas', () => {
    const limits = quota('limits', { 'limits.cpu': '3', 'limits.memory': '4Gi' }, {});
    assert.deepEqual(quotaProblems([limits], needed, {}), [
      'ResourceQuota/shop/limits: limits.cpu would be exceeded: the release needs 4000m, 3000m is free (hard 3000m, used 0m)',
    ]);
  });

  it('shows no negative free amount when a quota is already overused', () => {
    const over = quota('over', { pods: '2' }, { pods: '5' });
    assert.deepEqual(quotaProblems([over], needed, {}), [
      'ResourceQuota/shop/over: pods would be exceeded: the release needs 4, 0 is free (hard 2, used 5)',
    ]);
  });

  it('takes hard limits from the spec and counts nothing as used before the quota has a status', () => {
    const fresh = quota('fresh', { pods: '3' });
    assert.deepEqual(quotaProblems([fresh], needed, {}), [
      'ResourceQuota/shop/fresh: pods would be exceeded: the release needs 4, 3 is free (hard 3, used 0)',
    ]);
  });

  it('judges by the hard limits admission enforces, from the status, over an edited spec not yet in force', () => {
    const edited: KubeObject = {
      ...quota('edited', { pods: '10' }),
      status: { hard: { pods: '2' }, used: { pods: '0' } },
    };
    assert.deepEqual(quotaProblems([edited], needed, {}), [
      'ResourceQuota/shop/edited: pods would be exceeded: the release needs 4, 2 is free (hard 2, used 0)',
    ]);
  });

  it('ignores resources the release does not use and values that are not quantities', () => {
    const other = quota('other', { 'requests.storage': '1Gi', services: '0', 'requests.cpu': 'unlimited' }, {});
    assert.deepEqual(quotaProblems([other], needed, {}), []);
  });

  it('reports every quota without room', () => {
    const a = quota('a', { pods: '1' }, {});
    const b = quota('b', { pods: '2' }, {});
    const c = quota('c', { pods: '100' }, {});
    assert.deepEqual(
      quotaProblems([a, b, c], needed, {}).map((p) => p.split(':')[0]),
      ['ResourceQuota/shop/a', 'ResourceQuota/shop/b'],
    );
  });

  it('works with the amounts releaseAmounts computes', () => {
    const web = deployment('web', 3, [{ name: 'app', resources: { requests: { cpu: '500m', memory: '128Mi' } } }]);
    const live = deployment('web', 2, [{ name: 'app', resources: { requests: { cpu: '500m', memory: '128Mi' } } }]);
    const needs = releaseAmounts([web], []).total;
    const replaces = releaseAmounts([live], []).total;
    const q = quota('team', { 'requests.cpu': '2', 'requests.memory': '512Mi' }, { 'requests.cpu': '1500m' });
    assert.deepEqual(quotaProblems([q], needs, replaces), []);
    assert.deepEqual(quotaProblems([q], needs, {}), [
      'ResourceQuota/shop/team: requests.cpu would be exceeded: the release needs 1500m, 500m is free (hard 2000m, used 1500m)',
    ]);
  });
});
