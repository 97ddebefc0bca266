/**
 * The pure parts of the Kubernetes target's protections: object names, the HMAC of a revision, what restore may
 * write, and which live objects a release owns, may take over and may delete.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { KubeObject } from '../../activities/kubernetes/client.js';
import { loadManifests } from '../../activities/kubernetes/manifests.js';
import { nameProblem, nameRuleOf, segment } from '../../activities/kubernetes/names.js';
import { adoptionProblem, keptBecause, ownedBy, ownershipAnnotations } from '../../activities/kubernetes/ownership.js';
import { entryProblem, qualifiedKind } from '../../activities/kubernetes/restorable.js';
import {
  canonicalRevision,
  integrityProblem,
  revisionHmac,
  signRevision,
} from '../../activities/kubernetes/revision-integrity.js';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import { KeyRing } from '../../keys/key-ring.js';

const target: KubernetesTarget = {
  kind: 'kubernetes',
  service: 'web-shop',
  environment: 'staging',
  namespace: 'shop',
  manifestsDir: '/nowhere',
  imageRepository: '127.0.0.1:5000/web-shop',
  historyLimit: 5,
  fieldManager: 'deploy-agent',
};

/** The key material of each ring the tests made, to build a rotated ring that still holds it. */
const ringKeys = new WeakMap<KeyRing, Record<string, string>>();
function ringOf(current: string, ...ids: string[]): KeyRing {
  const keys = Object.fromEntries(ids.map((id) => [id, randomBytes(32).toString('base64')]));
  const ring = new KeyRing({ current, keys });
  ringKeys.set(ring, keys);
  return ring;
}

describe('object names', () => {
  it('accepts DNS-1123 subdomains for most kinds, labels for namespaces, DNS-1035 labels for Services', () => {
    assert.equal(nameRuleOf('ConfigMap'), 'dns-1123-subdomain');
    assert.equal(nameRuleOf('Namespace'), 'dns-1123-label');
    assert.equal(nameRuleOf('Service'), 'dns-1035-label');
    for (const name of ['web-shop', 'web-shop.config', 'a', '0abc', 'a'.repeat(63) + '.b'])
      assert.equal(nameProblem(name, 'dns-1123-subdomain'), undefined, name);
    assert.equal(nameProblem('web-shop', 'dns-1035-label'), undefined);
  });

  it('refuses what Kubernetes would refuse, and anything that could change a request path', () => {
    for (const name of [
      '',
      'Web',
      'web_shop',
      '-web',
      'web-',
      'a..b',
      '../secrets',
      'a/b',
      'a%2Fb',
      'a?b',
      'é',
      'a'.repeat(254),
    ])
      assert.match(nameProblem(name, 'dns-1123-subdomain') ?? '', /^expected a DNS-1123 subdomain/, name);
    assert.match(nameProblem('web.shop', 'dns-1123-label') ?? '', /^expected a DNS-1123 label/);
    assert.match(nameProblem('a'.repeat(64), 'dns-1123-label') ?? '', /at most 63/);
    assert.match(nameProblem('1web', 'dns-1035-label') ?? '', /^expected a DNS-1035 label/);
    assert.match(nameProblem(42, 'dns-1123-subdomain') ?? '', /^expected/);
  });

  it('encodes a path segment so that no value adds a segment or a query', () => {
    assert.equal(segment('../x?y=1#z'), '..%2Fx%3Fy%3D1%23z');
  });

  it('refuses a manifest with an invalid name or namespace, naming the file, the object and the field', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'names-test-'));
    try {
      const refusal = async (text: string): Promise<string> => {
        await writeFile(join(dir, 'app.yaml'), text);
        try {
          await loadManifests({ ...target, manifestsDir: dir });
        } catch (error) {
          assert.ok(error instanceof ApplicationFailure);
          assert.equal(error.type, 'InvalidRelease');
          return error.message;
        }
        assert.fail('expected a refusal');
      };
      assert.match(
        await refusal(
          'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n',
        ),
        /^app\.yaml document 2: ConfigMap metadata\.name: expected a DNS-1123 subdomain.*got "Bad_Name"$/,
      );
      assert.match(
        await refusal('apiVersion: v1\nkind: Service\nmetadata:\n  name: 9web\n'),
        /^app\.yaml document 1: Service metadata\.name: expected a DNS-1035 label/,
      );
      assert.match(
        await refusal('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: ../kube-system\n'),
        /^app\.yaml document 1: ConfigMap metadata\.namespace: expected a DNS-1123 label/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('revision HMAC', () => {
  const revision = { namespace: 'shop', name: 'deploy-agent.web-shop.staging.v3', content: '{"format":1}' };

  it('covers namespace, name and content, each delimited by its length', () => {
    const canonical = canonicalRevision(revision).toString('utf8');
    assert.equal(canonical, '24:deploy-agent revision v14:shop32:deploy-agent.web-shop.staging.v312:{"format":1}');
    // Moving a byte from one part to the next makes another canonical form.
    assert.notDeepEqual(
      canonicalRevision({ ...revision, namespace: 'sho', name: `p${revision.name}` }),
      canonicalRevision(revision),
    );
  });

  it('verifies what it signed, with the key id it recorded, also after the ring rotated', () => {
    const ring = ringOf('k1', 'k1');
    const signed = signRevision(ring, revision);
    assert.equal(signed.keyId, 'k1');
    assert.equal(signed.revision, revision.name);
    assert.match(signed.hmac, /^[0-9a-f]{64}$/);
    assert.equal(integrityProblem(ring, revision, signed), undefined);
    const k1 = ringKeys.get(ring);
    const rotated = new KeyRing({ current: 'k2', keys: { k2: randomBytes(32).toString('base64'), ...k1 } });
    assert.equal(integrityProblem(rotated, revision, signed), undefined, 'an older key still verifies');
    assert.equal(signRevision(rotated, revision).keyId, 'k2', 'new revisions use the current key');
  });

  it('refuses changed content, another name or namespace, a missing, unknown or malformed HMAC', () => {
    const ring = ringOf('k1', 'k1');
    const signed = signRevision(ring, revision);
    const altered = /does not verify: the Secret was altered/;
    assert.match(integrityProblem(ring, { ...revision, content: '{"format":2}' }, signed) ?? '', altered);
    assert.match(
      integrityProblem(ring, { ...revision, name: 'deploy-agent.web-shop.staging.v2' }, signed) ?? '',
      altered,
    );
    assert.match(integrityProblem(ring, { ...revision, namespace: 'other' }, signed) ?? '', altered);
    assert.match(
      integrityProblem(ring, revision, {
        ...signed,
        hmac: signed.hmac.replace(/^./, (c) => (c === '0' ? '1' : '0')),
      }) ?? '',
      altered,
    );
    assert.match(integrityProblem(ring, revision, { ...signed, hmac: 'zz' }) ?? '', altered);
    assert.match(integrityProblem(ring, revision, {}) ?? '', /carries no HMAC/);
    assert.match(
      integrityProblem(ring, revision, { ...signed, keyId: 'gone' }) ?? '',
      /key gone, which the worker's key ring no longer holds/,
    );
    // A key of another ring (another installation) makes another HMAC.
    assert.notEqual(revisionHmac(ringOf('k1', 'k1').key('revision') as Buffer, revision), signed.hmac);
    // The payload key of the same ring is not the revision key.
    assert.notEqual(revisionHmac(ring.key('payload') as Buffer, revision), signed.hmac);
  });
});

describe('what restore may write', () => {
  const entry = (apiVersion: string, kind: string, name = 'x', namespace = 'shop') => ({
    apiVersion,
    kind,
    namespace,
    name,
    object: { apiVersion, kind, metadata: { name, namespace } },
  });

  it('names kinds as Kind or Kind.group', () => {
    assert.equal(qualifiedKind('v1', 'ConfigMap'), 'ConfigMap');
    assert.equal(qualifiedKind('apps/v1', 'Deployment'), 'Deployment.apps');
  });

  it('allows the workload and configuration kinds of the environment namespace', () => {
    for (const [apiVersion, kind] of [
      ['v1', 'ConfigMap'],
      ['v1', 'Secret'],
      ['apps/v1', 'Deployment'],
      ['autoscaling/v2', 'HorizontalPodAutoscaler'],
      ['v1', 'PersistentVolumeClaim'],
    ] as const)
      assert.equal(entryProblem(target, entry(apiVersion, kind)), undefined, kind);
  });

  it('refuses another namespace, a kind outside the allowlist, a bad name, an object named differently inside', () => {
    assert.match(
      entryProblem(target, entry('v1', 'ConfigMap', 'x', 'kube-system')) ?? '',
      /outside the environment's namespace shop/,
    );
    assert.match(
      entryProblem(target, entry('rbac.authorization.k8s.io/v1', 'RoleBinding')) ?? '',
      /kind RoleBinding\.rbac\.authorization\.k8s\.io is not one restore may write \(kubernetes\.restorableKinds of staging\)/,
    );
    assert.match(entryProblem(target, entry('example.com/v1', 'Deployment')) ?? '', /kind Deployment\.example\.com/);
    assert.match(entryProblem(target, entry('v1', 'ConfigMap', '../x')) ?? '', /expected a DNS-1123 subdomain/);
    const mislabelled = {
      ...entry('v1', 'ConfigMap'),
      object: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'kube-system' } },
    };
    assert.match(entryProblem(target, mislabelled) ?? '', /the stored object names another object/);
  });

  it('allows what the policy adds', () => {
    const extended = { ...target, restorableKinds: ['RoleBinding.rbac.authorization.k8s.io'] };
    assert.equal(entryProblem(extended, entry('rbac.authorization.k8s.io/v1', 'RoleBinding')), undefined);
  });
});

describe('ownership', () => {
  const object = (
    annotations: Record<string, string> = {},
    labels: Record<string, string> = {},
    kind = 'ConfigMap',
  ): KubeObject => ({
    apiVersion: 'v1',
    kind,
    metadata: { name: 'web-shop-config', namespace: 'shop', annotations, labels },
  });
  const labelled = {
    'app.kubernetes.io/managed-by': 'deploy-agent',
    'deploy-agent.dev/service': 'web-shop',
    'deploy-agent.dev/environment': 'staging',
  };

  it('owns what carries its ownership annotation, or (applied before it existed) its labels', () => {
    assert.deepEqual(ownershipAnnotations(target), { 'deploy-agent.dev/owner': 'web-shop.staging' });
    assert.equal(ownedBy(target, object(ownershipAnnotations(target))), true);
    assert.equal(ownedBy(target, object({}, labelled)), true);
    assert.equal(ownedBy(target, object()), false);
    assert.equal(ownedBy(target, object({ 'deploy-agent.dev/owner': 'web-shop.production' }, labelled)), false);
  });

  it("takes over an unowned object only when the policy allows it, another release's never", () => {
    assert.equal(adoptionProblem(target, object(ownershipAnnotations(target))), undefined);
    assert.match(
      adoptionProblem(target, object()) ?? '',
      /^ConfigMap\/shop\/web-shop-config exists and no release of web-shop in staging owns it .*kubernetes\.adoptExisting/,
    );
    assert.equal(adoptionProblem({ ...target, adoptExisting: true }, object()), undefined);
    const foreign = object({}, { ...labelled, 'deploy-agent.dev/environment': 'production' });
    assert.match(
      adoptionProblem({ ...target, adoptExisting: true }, foreign) ?? '',
      /belongs to service web-shop in environment production/,
    );
    const annotatedForeign = object({ 'deploy-agent.dev/owner': 'billing.staging' });
    assert.match(
      adoptionProblem({ ...target, adoptExisting: true }, annotatedForeign) ?? '',
      /belongs to billing\.staging/,
    );
  });

  it('never deletes a PersistentVolumeClaim or an object annotated to be kept', () => {
    assert.match(keptBecause(object({}, {}, 'PersistentVolumeClaim')) ?? '', /PersistentVolumeClaim holds data/);
    assert.match(keptBecause(object({ 'deploy-agent.dev/resource-policy': 'keep' })) ?? '', /resource-policy=keep/);
    assert.equal(keptBecause(object()), undefined);
  });
});
