/**
 * The shipped security rules, evaluated by the real CEL engine: for each rule and each target it applies to, a
 * release that violates it and one that passes. Also rule files and policies that must stop the worker at load.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { loadPolicyFile } from '../../activities/policy.js';
import { evaluateRules, type DockerSecurityObject, type Manifest } from '../../activities/security/evaluate.js';
import { type CompiledRule, loadRuleFile, loadRuleSet } from '../../activities/security/rules.js';
import { hardenedConfig, memoryBytes } from '../../activities/docker/hardening.js';
import type { SecurityFinding, SecuritySettings } from '../../domain/security.js';
import { SpecError } from '../../domain/spec.js';

const PROTECTED: SecuritySettings = { protected: true, overrides: {} };
const OTHER: SecuritySettings = { protected: false, overrides: {} };
const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A Docker container that passes every rule. */
const safeContainer: DockerSecurityObject = {
  name: 'web_prod',
  image: `registry/web@${DIGEST}`,
  version: '1.0.0',
  user: '',
  imageUser: 'app',
  privileged: false,
  capabilities: [],
  hostNetwork: false,
  hostPid: false,
  mounts: [],
  memory: 256 * 1024 ** 2,
  cpus: 0.5,
  env: ['LOG_LEVEL', 'PORT'],
};

type Json = Record<string, unknown>;

/** A Deployment that passes every rule; `pod` and `container` change its pod spec and its one container. */
function deployment(container: Json = {}, pod: Json = {}): Manifest {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: {
      template: {
        spec: {
          securityContext: { runAsNonRoot: true },
          containers: [
            {
              name: 'web',
              image: `registry/web@${DIGEST}`,
              env: [{ name: 'LOG_LEVEL', value: 'info' }],
              resources: { limits: { memory: '128Mi', cpu: '500m' } },
              ...container,
            },
          ],
          ...pod,
        },
      },
    },
  };
}

const restricted = { metadata: { name: 'shop', labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } };

let rules: CompiledRule[];
const dockerFindings = (change: Partial<DockerSecurityObject>, settings = PROTECTED) =>
  evaluateRules(rules, { kind: 'docker', container: { ...safeContainer, ...change } }, settings);
const kubeFindings = (objects: Manifest[], namespaceObject = restricted, settings = PROTECTED) =>
  evaluateRules(rules, { kind: 'kubernetes', objects, namespaceObject }, settings);
const brief = (findings: SecurityFinding[]) => findings.map((f) => `${f.rule} ${f.object} ${f.field} ${f.action}`);

interface Case {
  rule: string;
  docker?: { violating: Partial<DockerSecurityObject>; field: string };
  kubernetes?: { violating: () => Manifest[]; namespace?: typeof restricted; object: string; field: string };
}

const cases: Case[] = [
  {
    rule: 'no-privileged',
    docker: { violating: { privileged: true }, field: 'container.privileged' },
    kubernetes: {
      violating: () => [deployment({ securityContext: { privileged: true } })],
      object: 'Deployment/web',
      field: 'spec.template.spec.containers[0].securityContext.privileged',
    },
  },
  {
    rule: 'no-host-mounts',
    docker: { violating: { mounts: [{ source: '/etc', target: '/host', readOnly: true }] }, field: 'container.mounts' },
    kubernetes: {
      violating: () => [deployment({}, { volumes: [{ name: 'root', hostPath: { path: '/' } }] })],
      object: 'Deployment/web',
      field: 'spec.template.spec.volumes[name=root].hostPath',
    },
  },
  {
    rule: 'no-host-network',
    docker: { violating: { hostNetwork: true }, field: 'container.hostNetwork' },
    kubernetes: {
      violating: () => [deployment({}, { hostNetwork: true })],
      object: 'Deployment/web',
      field: 'spec.template.spec.hostNetwork',
    },
  },
  {
    rule: 'no-host-pid',
    docker: { violating: { hostPid: true }, field: 'container.hostPid' },
    kubernetes: {
      violating: () => [deployment({}, { hostPID: true })],
      object: 'Deployment/web',
      field: 'spec.template.spec.hostPID',
    },
  },
  {
    rule: 'no-root-user',
    docker: { violating: { user: '0:0' }, field: 'container.user' },
    kubernetes: {
      violating: () => [deployment({}, { securityContext: {} })],
      object: 'Deployment/web',
      field: 'spec.template.spec.containers[0].securityContext.runAsNonRoot',
    },
  },
  {
    rule: 'no-added-capabilities',
    docker: { violating: { capabilities: ['NET_ADMIN'] }, field: 'container.capabilities' },
    kubernetes: {
      violating: () => [deployment({ securityContext: { capabilities: { add: ['NET_ADMIN'] } } })],
      object: 'Deployment/web',
      field: 'spec.template.spec.containers[0].securityContext.capabilities.add',
    },
  },
  {
    rule: 'resource-limits',
    docker: { violating: { memory: 0 }, field: 'container.resources.memory' },
    kubernetes: {
      violating: () => [deployment({ resources: { limits: { memory: '128Mi' } } })],
      object: 'Deployment/web',
      field: 'spec.template.spec.containers[0].resources.limits.cpu',
    },
  },
  {
    rule: 'pinned-images',
    docker: { violating: { version: 'latest' }, field: 'version' },
    kubernetes: {
      violating: () => [
        deployment(
          {},
          {
            initContainers: [
              { name: 'init', image: 'busybox:latest', resources: { limits: { memory: '8Mi', cpu: '1' } } },
            ],
          },
        ),
      ],
      object: 'Deployment/web',
      field: 'spec.template.spec.initContainers[0].image',
    },
  },
  {
    rule: 'no-plain-text-secrets',
    docker: { violating: { env: ['LOG_LEVEL', 'JWT_SIGNING_KEY'] }, field: 'container.env.JWT_SIGNING_KEY' },
    kubernetes: {
      violating: () => [deployment({ env: [{ name: 'DB_PASS', value: 'x' }] })],
      object: 'Deployment/web',
      field: 'spec.template.spec.containers[0].env[name=DB_PASS].value',
    },
  },
  {
    rule: 'no-secret-manifests',
    kubernetes: {
      violating: () => [
        deployment(),
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds' }, stringData: { KEY: 'x' } },
      ],
      object: 'Secret/creds',
      field: 'stringData',
    },
  },
  {
    rule: 'namespace-restricted',
    kubernetes: {
      violating: () => [deployment()],
      namespace: { metadata: { name: 'shop', labels: { 'pod-security.kubernetes.io/enforce': 'baseline' } } },
      object: 'Namespace/shop',
      field: 'metadata.labels["pod-security.kubernetes.io/enforce"]',
    },
  },
];

describe('shipped security rules', () => {
  before(async () => {
    rules = await loadRuleSet([]);
  });

  it('has a failing and a passing fixture for every shipped rule and target', () => {
    for (const rule of rules) {
      const found = cases.find((c) => c.rule === rule.id);
      assert.ok(found, `no fixture for ${rule.id}`);
      assert.equal(Boolean(found.docker), Boolean(rule.docker), `${rule.id}: docker fixture`);
      assert.equal(Boolean(found.kubernetes), Boolean(rule.kubernetes), `${rule.id}: kubernetes fixture`);
    }
  });

  it('passes the safe Docker container and the safe Deployment', () => {
    assert.deepEqual(brief(dockerFindings({})), []);
    assert.deepEqual(brief(kubeFindings([deployment()])), []);
    // A Secret without values (filled by an operator) is fine too.
    assert.deepEqual(brief(kubeFindings([{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' } }])), []);
  });

  for (const c of cases) {
    if (c.docker) {
      const { violating, field } = c.docker;
      it(`${c.rule}: Docker`, () => {
        const findings = dockerFindings(violating);
        assert.deepEqual(
          findings.map((f) => [f.rule, f.object, f.field]),
          [[c.rule, 'container web_prod', field]],
        );
      });
    }
    if (c.kubernetes) {
      const { violating, namespace, object, field } = c.kubernetes;
      it(`${c.rule}: Kubernetes`, () => {
        const findings = kubeFindings(violating(), namespace);
        assert.deepEqual(
          findings.map((f) => [f.rule, f.object, f.field]),
          [[c.rule, object, field]],
        );
      });
    }
  }

  it('catches the secret names the suffix check let through, and leaves ordinary settings alone', () => {
    const secrets = ['AWS_SECRET_ACCESS_KEY', 'DB_PASS', 'DATABASE_URL', 'JWT_SIGNING_KEY', 'API_TOKEN', 'db_password'];
    const settings = ['LOG_LEVEL', 'PORT', 'GREETING', 'PUBLIC_URL', 'PASSAGE_COUNT', 'KEYCLOAK_REALM'];
    const findings = dockerFindings({ env: [...secrets, ...settings] });
    assert.deepEqual(
      findings.map((f) => f.field),
      secrets.map((name) => `container.env.${name}`),
    );
  });

  it('judges the image user when the spec sets none', () => {
    assert.deepEqual(brief(dockerFindings({ imageUser: '' })), ['no-root-user container web_prod container.user deny']);
    assert.deepEqual(brief(dockerFindings({ imageUser: 'root' })).length, 1);
    assert.deepEqual(brief(dockerFindings({ imageUser: '0', user: '1000:1000' })), []);
  });

  it('takes the action per environment kind, and the policy overrides it', () => {
    assert.deepEqual(brief(dockerFindings({ memory: 0 }, OTHER)), [
      'resource-limits container web_prod container.resources.memory warn',
    ]);
    assert.deepEqual(
      brief(dockerFindings({ privileged: true }, OTHER))
        .at(0)
        ?.endsWith('deny'),
      true,
    );
    const relaxed = {
      protected: true,
      overrides: { 'no-privileged': 'warn' as const, 'resource-limits': 'off' as const },
    };
    assert.deepEqual(brief(dockerFindings({ privileged: true, memory: 0 }, relaxed)), [
      'no-privileged container web_prod container.privileged warn',
    ]);
  });

  it('never puts a value into a finding', () => {
    const findings = kubeFindings([deployment({ env: [{ name: 'DB_PASSWORD', value: 'hunter2-marker' }] })]);
    assert.equal(findings.length, 1);
    assert.ok(!JSON.stringify(findings).includes('hunter2-marker'));
  });
});

describe('Docker safe defaults', () => {
  it('drops every capability, forbids new privileges and sets limits from the spec', () => {
    const config = hardenedConfig({
      user: '1000',
      privileged: false,
      capabilities: ['NET_BIND_SERVICE'],
      hostNetwork: false,
      hostPid: false,
      mounts: [],
      resources: { memory: '256m', cpus: 0.5 },
    });
    assert.equal(config.User, '1000');
    assert.deepEqual(config.HostConfig.SecurityOpt, ['no-new-privileges:true']);
    assert.deepEqual(config.HostConfig.CapDrop, ['ALL']);
    assert.deepEqual(config.HostConfig.CapAdd, ['NET_BIND_SERVICE']);
    assert.equal(config.HostConfig.Memory, 256 * 1024 ** 2);
    assert.equal(config.HostConfig.NanoCpus, 500_000_000);
    assert.equal(memoryBytes('1Gi'), 1024 ** 3);
    assert.equal(memoryBytes(undefined), 0);
  });
});

describe('rule files and policies at load', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'security-rules-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const rule = (id: string, violation = 'object.privileged') => ({
    id,
    description: 'test rule',
    actions: { protected: 'deny', other: 'warn' },
    docker: { inspects: 'container', violation, field: 'container.privileged', message: 'privileged' },
  });
  const writeRules = async (name: string, document: unknown) => {
    const file = join(dir, name);
    await writeFile(file, stringify(document));
    return file;
  };
  const policy = async (top: Record<string, unknown>, staging: Record<string, unknown> = {}) => {
    const file = join(dir, 'policy.yaml');
    const environments = { staging: { docker: { host: 'unix:///var/run/docker.sock' }, ...staging } };
    await writeFile(file, stringify({ identity: { insecureDevMode: true }, environments, ...top }));
    return file;
  };
  const problemsOf = async (promise: Promise<unknown>) => {
    try {
      await promise;
    } catch (error) {
      assert.ok(error instanceof SpecError, String(error));
      return { file: error.file, problems: error.problems };
    }
    assert.fail('expected a SpecError');
  };

  it('refuses an expression that does not compile, naming the file, the field and the rule', async () => {
    const file = await writeRules('broken.yaml', { rules: [rule('mine'), rule('broken', 'object.privileged &&')] });
    const { file: named, problems } = await problemsOf(loadRuleFile(file));
    assert.equal(named, file);
    assert.equal(problems.length, 1);
    assert.match(problems[0] ?? '', /^rules\.1\.docker\.violation \(broken\): expected a CEL expression: /);
  });

  it('refuses a rule file that does not fit the schema, with its line', async () => {
    const file = await writeRules('shape.yaml', { rules: [{ ...rule('x'), actions: { protected: 'block' } }] });
    const { problems } = await problemsOf(loadRuleFile(file));
    assert.ok(problems.some((p) => /^line \d+: rules\.0\.actions\.protected: expected deny, warn or off/.test(p)));
  });

  it('refuses a policy whose rule file repeats a shipped rule id', async () => {
    const file = await writeRules('dup.yaml', { rules: [rule('no-privileged')] });
    const { file: named, problems } = await problemsOf(loadPolicyFile(await policy({ securityRules: ['dup.yaml'] })));
    assert.equal(named, file);
    assert.match(problems[0] ?? '', /rule no-privileged: the id is already taken by a rule of .*default\.yaml/);
  });

  it('refuses a policy that sets an unknown rule id', async () => {
    const file = await policy({}, { security: { 'no-such-rule': 'off' } });
    const { file: named, problems } = await problemsOf(loadPolicyFile(file));
    assert.equal(named, file);
    assert.match(
      problems[0] ?? '',
      /^environments\.staging\.security\.no-such-rule: unknown rule id, expected one of /,
    );
  });

  it("loads the policy's own rules relative to the policy file", async () => {
    await writeRules('own.yaml', { rules: [rule('my-rule')] });
    const { rules: loaded } = await loadPolicyFile(
      await policy({ securityRules: ['own.yaml'] }, { security: { 'my-rule': 'off' } }),
    );
    assert.ok(loaded.some((r) => r.id === 'my-rule'));
    assert.ok(loaded.some((r) => r.id === 'no-privileged'));
  });

  it("covers the policy's rule files in the policy hash a report names", async () => {
    await writeRules('own.yaml', { rules: [rule('my-rule')] });
    const file = await policy({ securityRules: ['own.yaml'] });
    const before = (await loadPolicyFile(file)).hash;
    await writeRules('own.yaml', { rules: [rule('my-rule', 'object.privileged == true')] });
    assert.notEqual((await loadPolicyFile(file)).hash, before);
  });
});
