import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { loadPolicyFile, policyActivities } from '../../activities/policy.js';
import { SHIPPED_RULE_FILES } from '../../activities/security/rules.js';
import { isNamed, type Identity } from '../../domain/identity.js';
import { activeFreeze, budgetsOf, checkPolicy, environmentPolicySchema } from '../../domain/policy.js';
import { checkSpec, DEFAULT_BUDGETS, formatProblem, type ServiceSpec, SpecError } from '../../domain/spec.js';

const EXAMPLE = fileURLToPath(new URL('../../../examples/policy.yaml', import.meta.url));

const docker = { host: 'unix:///var/run/docker.sock', ports: { web: 18080 } };

/** A valid policy with these environments, and the problems checkPolicy finds in it as `path: message` lines. */
function problemsOf(environments: Record<string, unknown>, identity: unknown = { insecureDevMode: true }): string[] {
  return checkPolicy({ identity, environments }).problems.map(formatProblem);
}

const protectedProduction = {
  protected: true,
  docker,
  deployers: ['ci-bot'],
  approval: { required: 1, approvers: ['alice'] },
};

describe('platform policy', () => {
  it('parses examples/policy.yaml, filling defaults and reading durations', async () => {
    const { value, problems } = checkPolicy(parse(await readFile(EXAMPLE, 'utf8')));
    assert.deepEqual(problems.map(formatProblem), []);
    assert.ok(value);
    assert.equal(value.identity.oidc?.issuer, 'https://sso.example.com/realms/platform');
    assert.equal(value.identity.oidc?.maxVoteTokenAge, 300_000);
    assert.equal(value.identity.insecureDevMode, false);
    assert.deepEqual(Object.keys(value.environments), ['staging', 'production']);
    const { staging, production } = value.environments;
    assert.equal(staging?.docker?.ports['web-shop'], 8080);
    assert.equal(staging?.docker?.hostIp, '127.0.0.1');
    assert.equal(staging?.protected, false);
    assert.deepEqual(staging?.deployers, [], 'no list: every verified identity may deploy to staging');
    assert.equal(staging?.approval.required, 0);
    assert.equal(production?.kubernetes?.namespace, 'web-shop');
    assert.equal(production?.kubernetes?.allowExecCredentials, false);
    assert.deepEqual(production?.approval, {
      required: 2,
      approvers: ['group:release-managers', 'alice'],
      deadline: 24 * 3_600_000,
    });
    assert.equal(production?.promotedFrom, 'staging');
    assert.equal(production?.historyLimit, 10);
    assert.deepEqual(budgetsOf(production), { ...DEFAULT_BUDGETS, validate: 120_000, rollback: 300_000 });
    assert.deepEqual(budgetsOf(staging), DEFAULT_BUDGETS);
  });

  it('loads a policy file: paths made absolute next to it, fingerprinted by its bytes and its rules', async () => {
    const { policy, hash, file } = await loadPolicyFile(EXAMPLE);
    assert.equal(file, EXAMPLE);
    const expected = createHash('sha256').update(await readFile(EXAMPLE));
    for (const rules of [...SHIPPED_RULE_FILES, ...policy.securityRules]) expected.update(await readFile(rules));
    assert.equal(hash, expected.digest('hex'));
    const here = dirname(EXAMPLE);
    assert.equal(policy.environments.production?.kubernetes?.kubeconfig, join(here, 'kubeconfigs/production.yaml'));
    assert.deepEqual(policy.environments.staging?.docker?.tls, {
      ca: join(here, 'certs/staging-ca.pem'),
      cert: join(here, 'certs/worker.pem'),
      key: join(here, 'certs/worker-key.pem'),
    });
    assert.deepEqual(policy.sourceRoots, ['/srv/deploy-agent/checkouts']);
  });

  it('needs a way to prove identities and at least one environment', () => {
    assert.deepEqual(problemsOf({ staging: { docker } }, {}), [
      'identity: expected identity.oidc (or insecureDevMode: true for local development only)',
    ]);
    assert.deepEqual(problemsOf({}), ['environments: expected at least one environment']);
  });

  it('refuses unknown fields and environment names that are not DNS labels', () => {
    assert.deepEqual(problemsOf({ staging: { docker, approvals: { required: 1 } } }), [
      'environments.staging: Unrecognized key: "approvals"',
    ]);
    assert.equal(problemsOf({ Staging_1: { docker } }).length, 1);
  });

  it('needs, for each environment, how the worker reaches it', () => {
    assert.deepEqual(problemsOf({ staging: {} }), [
      'environments.staging: expected docker or kubernetes: how the worker reaches this environment',
    ]);
  });

  it('accepts a protected environment with approvals and deployers', () => {
    assert.deepEqual(problemsOf({ production: protectedProduction }), []);
  });

  it('refuses a protected environment without approvals', () => {
    assert.deepEqual(problemsOf({ production: { ...protectedProduction, approval: { required: 0 } } }), [
      'environments.production.approval.required: a protected environment needs at least 1 approval',
    ]);
    assert.deepEqual(problemsOf({ production: { protected: true, docker, deployers: ['ci-bot'] } }), [
      'environments.production.approval.required: a protected environment needs at least 1 approval',
    ]);
  });

  it('refuses a protected environment without a list of deployers', () => {
    assert.deepEqual(problemsOf({ production: { ...protectedProduction, deployers: [] } }), [
      'environments.production.deployers: a protected environment needs a list of who may deploy',
    ]);
  });

  it('needs as many approvers as required approvals, and an approver for rollback authorization', () => {
    const approval = { required: 2, approvers: ['alice'] };
    assert.deepEqual(problemsOf({ production: { ...protectedProduction, approval } }), [
      'environments.production.approval.approvers: needs at least as many approvers as required',
    ]);
    assert.deepEqual(problemsOf({ staging: { docker, rollbackRequiresApproval: true } }), [
      'environments.staging.approval.approvers: rollback authorization needs an approver',
    ]);
  });

  it('refuses two environments on one namespace of one cluster', () => {
    const kube = (namespace: string, context?: string) => ({
      kubernetes: { kubeconfig: 'kubeconfigs/prod.yaml', context, namespace },
    });
    assert.deepEqual(problemsOf({ a: kube('web'), b: kube('web') }), [
      'environments.b.kubernetes.namespace: the same namespace as environment a',
    ]);
    assert.deepEqual(problemsOf({ a: kube('web', 'east'), b: kube('web', 'west'), c: kube('shop', 'east') }), []);
  });

  it('refuses promotion from an environment the policy does not define', () => {
    assert.deepEqual(problemsOf({ staging: { docker }, production: { docker, promotedFrom: 'stagign' } }), [
      'environments.production.promotedFrom: expected an environment of this policy',
    ]);
    assert.deepEqual(problemsOf({ staging: { docker }, production: { docker, promotedFrom: 'staging' } }), []);
  });

  it('refuses a freeze that ends before (or when) it starts', () => {
    const freezes = [
      { from: '2026-12-24T00:00:00Z', until: '2026-12-27T00:00:00Z', reason: 'holidays' },
      { from: '2026-12-31T00:00:00Z', until: '2026-12-30T00:00:00Z', reason: 'new year' },
      { from: '2027-01-05T10:00:00+02:00', until: '2027-01-05T08:00:00Z', reason: 'same instant' },
    ];
    assert.deepEqual(problemsOf({ production: { docker, freezes } }), [
      'environments.production.freezes.1.until: expected a time after from',
      'environments.production.freezes.2.until: expected a time after from',
    ]);
    assert.equal(problemsOf({ production: { docker, freezes: [{ ...freezes[0], from: '24.12.2026' }] } }).length, 1);
  });

  it('finds the freeze window a time falls in, its start included and its end not', () => {
    const env = environmentPolicySchema.parse({
      docker,
      freezes: [{ from: '2026-12-24T00:00:00Z', until: '2026-12-27T00:00:00Z', reason: 'holidays' }],
    });
    assert.equal(activeFreeze(env, new Date('2026-12-24T00:00:00Z'))?.reason, 'holidays');
    assert.equal(activeFreeze(env, new Date('2026-12-26T23:59:59Z'))?.reason, 'holidays');
    assert.equal(activeFreeze(env, new Date('2026-12-27T00:00:00Z')), undefined);
  });

  it('refuses principals that are not a user name or group:<name>', () => {
    for (const principal of ['', 'two words', ':alice', 'group: sre'])
      assert.equal(problemsOf({ staging: { docker, deployers: [principal] } }).length, 1, JSON.stringify(principal));
    assert.deepEqual(problemsOf({ staging: { docker, deployers: ['alice', 'group:sre', 'group:/platform/sre'] } }), []);
  });

  it('lets an environment override time budgets and keeps the defaults otherwise', () => {
    const env = environmentPolicySchema.parse({ docker, budgets: { validate: '10s' } });
    const budgets = budgetsOf(env);
    assert.equal(budgets.validate, 10_000);
    assert.equal(budgets.rollback, DEFAULT_BUDGETS.rollback);
    assert.deepEqual(DEFAULT_BUDGETS, {
      validate: 120_000,
      trackChanges: 30_000,
      environmentUpdate: 180_000,
      rollback: 300_000,
      report: 60_000,
    });
  });
});

describe('principals', () => {
  const carol: Identity = { user: 'carol', groups: ['release-managers', '/platform'], proof: 'oidc' };

  it('names a user by name, and every member of a group by group:<name>', () => {
    assert.ok(isNamed(carol, ['carol']));
    assert.ok(isNamed(carol, ['group:release-managers']));
    assert.ok(isNamed(carol, ['alice', 'group:sre', 'group:release-managers']));
    assert.ok(!isNamed(carol, ['alice', 'group:sre']));
    assert.ok(!isNamed(carol, []));
  });

  it('compares groups without a leading slash, as providers write them either way', () => {
    assert.ok(isNamed(carol, ['group:platform']));
    assert.ok(isNamed(carol, ['group:/release-managers']));
  });

  it('never matches a user against a group principal or a group against a user principal', () => {
    assert.ok(!isNamed({ user: 'group:sre', groups: [], proof: 'insecure-dev' }, ['group:sre']));
    assert.ok(!isNamed({ user: 'mallory', groups: ['alice'], proof: 'oidc' }, ['alice']));
    assert.ok(!isNamed({ user: 'Carol', groups: [], proof: 'oidc' }, ['carol']), 'names are compared exactly');
  });
});

describe('the policy as the worker loads it for one admission', () => {
  let dir: string;
  let roots: string;
  const spec = (extra: Record<string, unknown> = {}): ServiceSpec => {
    const checked = checkSpec({ service: 'web', target: 'docker', image: { repository: 'r/web' }, ...extra });
    assert.ok(checked.spec, JSON.stringify(checked.problems));
    return checked.spec;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'policy-test-'));
    roots = join(dir, 'checkouts');
    await mkdir(join(roots, 'web'), { recursive: true });
    await mkdir(join(dir, 'elsewhere'), { recursive: true });
    await mkdir(`${roots}-evil`, { recursive: true });
    await symlink(join(dir, 'elsewhere'), join(roots, 'link-out'));
    await writeFile(
      join(dir, 'policy.yaml'),
      `identity: { insecureDevMode: true }
sourceRoots: [checkouts]
environments:
  staging:
    docker: { host: 'unix:///var/run/docker.sock', ports: { web: 18080 } }
  production:
    kubernetes: { namespace: web }
`,
    );
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('answers the environment part and the fingerprint', async () => {
    const activities = policyActivities(join(dir, 'policy.yaml'));
    const admitted = await activities.loadPolicy({ service: 'web', environment: 'staging', spec: spec() });
    assert.equal(admitted.environment.docker?.ports.web, 18080);
    assert.equal(admitted.identity.insecureDevMode, true);
    assert.match(admitted.hash, /^[0-9a-f]{64}$/);
  });

  it('refuses what the policy does not describe, naming what it does', async () => {
    const activities = policyActivities(join(dir, 'policy.yaml'));
    await assert.rejects(
      activities.loadPolicy({ service: 'web', environment: 'prod', spec: spec() }),
      /environment prod is not defined by the platform policy \(defined: staging, production\)/,
    );
    await assert.rejects(
      activities.loadPolicy({ service: 'web', environment: 'production', spec: spec() }),
      /no docker target for production/,
    );
    await assert.rejects(
      activities.loadPolicy({ service: 'shop', environment: 'staging', spec: spec({ service: 'shop' }) }),
      /publishes no port for shop in staging \(environments\.staging\.docker\.ports\.shop\)/,
    );
  });

  it('refuses a source repository outside the source roots, even through .. or a symbolic link', async () => {
    const activities = policyActivities(join(dir, 'policy.yaml'));
    const inside = spec({ source: { repository: join(roots, 'web') } });
    assert.ok(await activities.loadPolicy({ service: 'web', environment: 'staging', spec: inside }));
    for (const repository of [
      join(dir, 'elsewhere'),
      join(roots, '..', 'elsewhere'),
      `${roots}-evil`,
      join(roots, 'link-out'),
    ])
      await assert.rejects(
        activities.loadPolicy({ service: 'web', environment: 'staging', spec: spec({ source: { repository } }) }),
        /outside the directories the platform policy lets the worker read/,
        repository,
      );
  });

  it('refuses a path that does not exist on the worker', async () => {
    const activities = policyActivities(join(dir, 'policy.yaml'));
    const release = { manifests: join(roots, 'missing') };
    await assert.rejects(
      activities.loadPolicy({ service: 'web', environment: 'staging', spec: spec({ release }) }),
      /release\.manifests .*missing does not exist on the worker/,
    );
  });

  it('refuses a policy file that does not parse, naming the file', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'identity: {}\nenvironments: {}\n');
    await assert.rejects(loadPolicyFile(join(dir, 'bad.yaml')), (error: unknown) => {
      assert.ok(error instanceof SpecError);
      assert.equal(error.file, join(dir, 'bad.yaml'));
      assert.deepEqual(error.problems, [
        'line 1: identity: expected identity.oidc (or insecureDevMode: true for local development only)',
        'line 2: environments: expected at least one environment',
      ]);
      return true;
    });
  });
});
