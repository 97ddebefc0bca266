import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { changedVariables, resolveSecrets, withoutSecretValues } from '../../activities/docker/secrets.js';
import { loadManifests } from '../../activities/kubernetes/manifests.js';
import { loadPolicyFile } from '../../activities/policy.js';
import { loadSpecFile } from '../../client/spec-file.js';
import { environmentPolicySchema, checkPolicy, type EnvironmentPolicy } from '../../domain/policy.js';
import { secretProblems } from '../../domain/secrets.js';
import { checkSpec, DEFAULT_BUDGETS, formatProblem, type ServiceSpec } from '../../domain/spec.js';
import { type DockerTarget, targetOf } from '../../domain/target.js';
import { loadKeyRingFile } from '../../keys/key-ring.js';
import { fingerprint } from '../../keys/fingerprint.js';

const kube = {
  kind: 'kubernetes',
  service: 'web',
  environment: 'staging',
  namespace: 'shop',
  manifestsDir: '',
  imageRepository: 'r/web',
  historyLimit: 5,
  fieldManager: 'deploy-agent',
} as const;

const marker = () => `marker-${randomBytes(12).toString('hex')}`;

function spec(container: Record<string, unknown>, target = 'docker'): ServiceSpec {
  const { spec, problems } = checkSpec({
    service: 'web',
    target,
    image: { repository: 'r/web' },
    container,
    ...(target === 'kubernetes' ? { release: { manifests: '/k8s' } } : {}),
  });
  assert.ok(spec, problems.map(formatProblem).join('\n'));
  return spec;
}

function environment(more: Record<string, unknown>): EnvironmentPolicy {
  return environmentPolicySchema.parse({ docker: { host: 'unix:///x.sock', ports: { web: 8080 } }, ...more });
}

const service = (s: ServiceSpec, settings: EnvironmentPolicy) => ({
  service: 'web',
  environment: 'staging',
  spec: s,
  settings,
  budgets: DEFAULT_BUDGETS,
});

describe('secrets by reference', () => {
  const settings = environment({
    secrets: {
      'db-password': { file: '/run/secrets/db' },
      'api-token': { env: 'WORKER_API_TOKEN', services: ['web'] },
      'billing-key': { env: 'BILLING_KEY', services: ['billing'] },
    },
  });

  it('accepts secrets the policy defines for the service, and the target carries only their references', () => {
    const s = spec({ secrets: { DB_PASSWORD: 'db-password', API_TOKEN: 'api-token' } });
    assert.deepEqual(secretProblems(service(s, settings)), []);
    const target = targetOf(service(s, settings)) as DockerTarget;
    assert.deepEqual(target.secrets, {
      DB_PASSWORD: { secret: 'db-password', file: '/run/secrets/db' },
      API_TOKEN: { secret: 'api-token', env: 'WORKER_API_TOKEN' },
    });
    assert.deepEqual(target.env, {});
  });

  it('refuses a secret the environment does not define, naming the spec field', () => {
    const s = spec({ secrets: { DB_PASSWORD: 'nope' } });
    assert.deepEqual(secretProblems(service(s, settings)).map(formatProblem), [
      'container.secrets.DB_PASSWORD: secret nope is not defined for environment staging ' +
        '(environments.staging.secrets in the platform policy)',
    ]);
    assert.equal((targetOf(service(s, settings)) as DockerTarget).secrets, undefined);
  });

  it('refuses a secret whose services exclude the service, and never hands it to the driver', () => {
    const s = spec({ secrets: { BILLING: 'billing-key' } });
    assert.deepEqual(secretProblems(service(s, settings)).map(formatProblem), [
      'container.secrets.BILLING: secret billing-key is not allowed for service web in staging (its services: billing)',
    ]);
    assert.equal((targetOf(service(s, settings)) as DockerTarget).secrets, undefined);
  });

  it('refuses a variable that is both a setting and a secret, and secrets on a Kubernetes release', () => {
    const both = spec({ env: { DB_PASSWORD_FILE: 'x' }, secrets: { DB_PASSWORD_FILE: 'db-password' } });
    assert.match(formatProblem(secretProblems(service(both, settings))[0]!), /either a setting or a secret/);
    const kube = spec({ secrets: { DB_PASSWORD: 'db-password' } }, 'kubernetes');
    assert.match(formatProblem(secretProblems(service(kube, settings))[0]!), /for the docker target/);
  });

  it('reads values only in the driver, and names the secret and where it looked when one is missing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'secrets-test-'));
    const value = marker();
    await writeFile(join(dir, 'db'), `${value}\n`);
    process.env.DEPLOY_AGENT_TEST_SECRET_VAR = `${value}-env`;
    process.env.DEPLOY_AGENT_KEYS ??= JSON.stringify({ current: 't', keys: { t: randomBytes(32).toString('base64') } });
    const target = (secrets: DockerTarget['secrets']) => ({
      ...(targetOf(service(spec({}), settings)) as DockerTarget),
      secrets,
    });
    try {
      const resolved = await resolveSecrets(
        target({
          A: { secret: 'a', file: join(dir, 'db') },
          B: { secret: 'b', env: 'DEPLOY_AGENT_TEST_SECRET_VAR' },
        }),
      );
      assert.deepEqual(resolved.env, [`A=${value}`, `B=${value}-env`]);
      await assert.rejects(resolveSecrets(target({ A: { secret: 'a', file: join(dir, 'gone') } })), (error: Error) => {
        assert.match(
          error.message,
          /secret a \(container\.secrets\.A\), looked for in file .*gone on the worker: cannot be read \(ENOENT\)/,
        );
        return true;
      });
      await assert.rejects(
        resolveSecrets(target({ B: { secret: 'b', env: 'DEPLOY_AGENT_TEST_UNSET' } })),
        (error: Error) => {
          assert.match(
            error.message,
            /secret b .*variable DEPLOY_AGENT_TEST_UNSET of the worker: the variable is not set/,
          );
          assert.equal((error as { nonRetryable?: boolean }).nonRetryable, true);
          return true;
        },
      );
    } finally {
      delete process.env.DEPLOY_AGENT_TEST_SECRET_VAR;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('cleans secret values out of engine errors, and diffs name only the variables', () => {
    const value = marker();
    const error = Object.assign(new Error(`(HTTP code 400) bad - invalid env X=${value}`), {
      json: { message: `invalid env X=${value}` },
    });
    withoutSecretValues(error, [value]);
    assert.ok(!JSON.stringify({ m: error.message, j: error.json, s: error.stack }).includes(value));
    assert.deepEqual(changedVariables([`A=1`, `B=${value}`, 'C=3'], ['A=1', 'B=other', 'D=4']), ['B', 'C', 'D']);
  });
});

describe('configuration fingerprints', () => {
  const saved = { ...process.env };
  after(() => {
    process.env.DEPLOY_AGENT_KEYS = saved.DEPLOY_AGENT_KEYS;
    if (saved.DEPLOY_AGENT_KEYS === undefined) delete process.env.DEPLOY_AGENT_KEYS;
  });
  const ring = (current: string, ids: string[]) =>
    JSON.stringify({
      current,
      keys: Object.fromEntries(ids.map((id) => [id, Buffer.alloc(32, id).toString('base64')])),
    });

  it('are keyed, name their key, change with the value, and compare across a rotation', () => {
    process.env.DEPLOY_AGENT_KEYS = ring('k1', ['k1']);
    const one = fingerprint('DB=one');
    assert.match(one, /^hmac-sha256:k1:[a-f0-9]{64}$/);
    assert.notEqual(fingerprint('DB=two'), one);
    process.env.DEPLOY_AGENT_KEYS = ring('k2', ['k1', 'k2']);
    assert.match(fingerprint('DB=one'), /^hmac-sha256:k2:/);
    assert.equal(fingerprint('DB=one', one), one, 'recomputed with the key the recorded one names');
    assert.match(fingerprint('DB=one', 'sha256:0'), /^sha256:/, 'recorded before keys: the unkeyed scheme');
    process.env.DEPLOY_AGENT_KEYS = ring('k3', ['k3']);
    assert.notEqual(fingerprint('DB=one', one), one, 'a key no longer held cannot vouch for it');
  });

  it('differ from a plain sha256 of the same text', () => {
    process.env.DEPLOY_AGENT_KEYS = ring('k1', ['k1']);
    delete process.env.DEPLOY_AGENT_KEYS_FILE;
    const keyed = fingerprint('DB=hunter2');
    delete process.env.DEPLOY_AGENT_KEYS;
    const plain = fingerprint('DB=hunter2');
    assert.match(plain, /^sha256:/);
    assert.notEqual(keyed.split(':').at(-1), plain.split(':').at(-1));
  });
});

describe('YAML and schema errors never quote the file', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'yaml-marker-test-'))));
  after(async () => rm(dir, { recursive: true, force: true }));

  const messageOf = async (run: () => Promise<unknown>): Promise<string> => {
    try {
      await run();
    } catch (error) {
      return `${(error as Error).message}\n${(error as Error).stack ?? ''}`;
    }
    assert.fail('expected a failure');
  };

  it('in a spec, a policy and a key file: file, line, column and the kind of error only', async () => {
    const value = marker();
    const texts = {
      'deploy.yaml': `service: web\ntarget: docker\ncontainer:\n  env:\n    DB_PASSWORD: "${value}\n`,
      'policy.yaml': `identity: {insecureDevMode: true}\nenvironments:\n  staging:\n    token: ${value}: [x\n`,
      'keys.yaml': `current: k1\nkeys:\n  k1: ${value}: {\n`,
    };
    for (const [name, text] of Object.entries(texts)) await writeFile(join(dir, name), text);
    const found = [
      await messageOf(() => loadSpecFile(join(dir, 'deploy.yaml'))),
      await messageOf(() => loadPolicyFile(join(dir, 'policy.yaml'))),
      await messageOf(() => Promise.resolve().then(() => loadKeyRingFile(join(dir, 'keys.yaml')))),
    ];
    for (const message of found) {
      assert.ok(!message.includes(value), message);
      assert.match(message, /yaml: line \d+, column \d+: YAML syntax error \([A-Z_]+\)/);
    }
  });

  it('an alias naming no anchor (a password starting with *) is reported by position, not by name', async () => {
    const value = marker();
    await writeFile(join(dir, 'alias.yaml'), `service: web\ntarget: docker\ncontainer:\n  env:\n    DB: *${value}\n`);
    const message = await messageOf(() => loadSpecFile(join(dir, 'alias.yaml')));
    assert.ok(!message.includes(value), message);
    assert.match(message, /alias\.yaml: line 5, column \d+: YAML alias error/);
  });

  it('in a Kubernetes Secret manifest: the document, line and column, not the line', async () => {
    const value = marker();
    const manifests = join(dir, 'k8s');
    await mkdir(manifests);
    await writeFile(
      join(manifests, 'secret.yaml'),
      `apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: ${value}: [oops\n`,
    );
    const message = await messageOf(() => loadManifests({ ...kube, manifestsDir: manifests }));
    assert.ok(!message.includes(value), message);
    assert.match(message, /secret\.yaml document 1: line 6, column \d+: YAML syntax error \([A-Z_]+\)/);
    await writeFile(
      join(manifests, 'secret.yaml'),
      `apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: *${value}\n`,
    );
    const alias = await messageOf(() => loadManifests({ ...kube, manifestsDir: manifests }));
    assert.ok(!alias.includes(value), alias);
    assert.match(alias, /secret\.yaml document 1: line 6, column \d+: YAML alias error/);
  });

  it('schema messages name fields, not the values of secret-looking ones', () => {
    const value = marker();
    const spec = checkSpec({
      service: 'web',
      target: 'docker',
      image: { repository: 'r/web' },
      container: { env: { DB_PASSWORD: { nested: value } }, secrets: { API_TOKEN: value.toUpperCase() }, user: 7 },
      healthCheck: { type: value },
    });
    const policy = checkPolicy({
      identity: { insecureDevMode: true },
      environments: {
        staging: {
          docker: { host: value, ports: { web: value } },
          secrets: { db: { file: 7, value }, other: { env: `${value} x` } },
        },
      },
    });
    const messages = [...spec.problems, ...policy.problems].map(formatProblem);
    assert.ok(messages.length >= 6, messages.join('\n'));
    for (const message of messages) assert.ok(!message.toLowerCase().includes(value), message);
  });
});
