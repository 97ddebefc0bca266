import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSpecFile } from '../../client/spec-file.js';
import { parseDuration } from '../../domain/duration.js';
import { checkSpec, formatProblem, parseSpec, SpecError } from '../../domain/spec.js';

/** A valid docker service spec; each test changes only what it is about. */
function specYaml({ sourceRepository }: { sourceRepository?: string } = {}): string {
  return `service: web-shop
target: docker
image:
  repository: 127.0.0.1:5000/web-shop
container:
  port: 8080
healthCheck:
  path: /health
  interval: 200ms
  timeout: 1s
  healthyWithin: 8s
${sourceRepository ? `source:\n  repository: ${sourceRepository}\n` : ''}`;
}

const minimal = { service: 'web', target: 'docker', image: { repository: 'r/web' } };

describe('service spec', () => {
  let dir: string;
  before(async () => (dir = await mkdtemp(join(tmpdir(), 'spec-test-'))));
  after(async () => rm(dir, { recursive: true, force: true }));

  async function problems(text: string): Promise<string[]> {
    const file = join(dir, `deploy-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(file, text);
    try {
      await loadSpecFile(file);
    } catch (error) {
      assert.ok(error instanceof SpecError, `expected a SpecError, got ${String(error)}`);
      assert.equal(error.file, file);
      assert.ok(error.message.includes(file), 'the message names the file');
      return error.problems;
    }
    assert.fail('expected the spec to be refused');
  }

  it('accepts a valid file, fills defaults and resolves the source repository next to the file', async () => {
    const file = join(dir, 'valid.yaml');
    await writeFile(file, specYaml({ sourceRepository: '../src/web-shop' }));
    const loaded = await loadSpecFile(file);
    assert.equal(loaded.spec.service, 'web-shop');
    assert.equal(loaded.spec.source?.repository, join(dir, '..', 'src', 'web-shop'));
    assert.equal(loaded.spec.source?.ref, 'v{version}');
    assert.equal(loaded.spec.container.port, 8080);
    assert.deepEqual(loaded.spec.container.env, {});
    assert.equal(loaded.spec.healthCheck.interval, 200);
    assert.equal(loaded.spec.healthCheck.type, 'http');
    assert.deepEqual(loaded.spec.dependsOn, []);
    assert.equal(
      (loaded.document.source as { repository?: string }).repository,
      join(dir, '..', 'src', 'web-shop'),
      'the document the request carries has the absolute path too',
    );
  });

  it('reports every problem at once, each with its line, path and expectation', async () => {
    const found = await problems(`service: Web_Shop
target: swarm
image:
  repository: Not A Repo
container:
  port: 70000
healthCheck:
  timeout: two minutes
surprise: true
`);
    assert.deepEqual(found, [
      'line 1: service: expected lowercase letters, digits and dashes (a DNS label)',
      'line 2: target: expected "docker" or "kubernetes"',
      'line 4: image.repository: expected an image repository without tag',
      'line 6: container.port: expected a port number (1-65535)',
      'line 8: healthCheck.timeout: expected a duration like 30s, 2m or 24h',
      'line 1: (top level): Unrecognized key: "surprise"',
    ]);
  });

  it('reports missing required fields', async () => {
    const found = await problems('service: web\n');
    assert.deepEqual(found, [
      'line 1: target: expected "docker" or "kubernetes"',
      'line 1: image: missing, expected object',
    ]);
  });

  it('gives a container 10 s between SIGTERM and SIGKILL unless the spec says otherwise, in whole seconds', () => {
    const base = { service: 'web', target: 'docker', image: { repository: 'r/web' } };
    assert.equal(checkSpec(base).spec?.container.stopGracePeriod, 10_000);
    assert.equal(checkSpec({ ...base, container: { stopGracePeriod: '2s' } }).spec?.container.stopGracePeriod, 2_000);
    const { problems } = checkSpec({ ...base, container: { stopGracePeriod: '1500ms' } });
    assert.deepEqual(problems.map(formatProblem), ['container.stopGracePeriod: expected whole seconds, at most 5m']);
  });

  it('needs release manifests for the kubernetes target', async () => {
    const found = await problems(`service: web
target: kubernetes
image:
  repository: registry.example.com/web
`);
    assert.deepEqual(found, ['line 1: release: missing, expected release.manifests for the kubernetes target']);
  });

  it('resolves a Kubernetes release next to the spec file', async () => {
    const file = join(dir, 'kube.yaml');
    await writeFile(
      file,
      `service: web
target: kubernetes
image:
  repository: registry.example.com/web
release:
  manifests: ./k8s
`,
    );
    const { spec, document } = await loadSpecFile(file);
    assert.equal(spec.release?.manifests, join(dir, 'k8s'));
    assert.equal((document.release as { manifests?: string }).manifests, join(dir, 'k8s'));
  });

  it('refuses YAML syntax errors with their line', async () => {
    const found = await problems('service: web\nimage: [unclosed\n');
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /^line \d+, column \d+: YAML syntax error \([A-Z_]+\)$/);
  });

  it('refuses an unreadable file', async () => {
    await assert.rejects(loadSpecFile(join(dir, 'missing.yaml')), (error: unknown) => {
      assert.ok(error instanceof SpecError);
      assert.match(error.problems[0] ?? '', /cannot be read/);
      return true;
    });
  });

  it('refuses secrets written as plain configuration', async () => {
    const text = specYaml().replace('  port: 8080\n', '  port: 8080\n  env:\n    DB_PASSWORD: hunter2\n');
    const found = await problems(text);
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /^line 8: container\.env\.DB_PASSWORD: looks like a secret/);
    assert.ok(!found[0]?.includes('hunter2'), 'the secret value is not repeated');
  });

  // Its author believes such a field has an effect: silently ignoring it would deploy against their intent.
  for (const field of [
    'environments',
    'approval',
    'approvers',
    'deployers',
    'protected',
    'rollbackRequiresApproval',
    'resolvers',
    'freezes',
    'breakGlass',
    'promotedFrom',
    'budgets',
    'historyLimit',
    'docker',
    'kubernetes',
    'kubeconfig',
    'context',
    'namespace',
    'host',
  ])
    it(`refuses the policy-owned field ${field}, naming it`, () => {
      const { spec, problems } = checkSpec({ ...minimal, [field]: { anything: true } });
      assert.equal(spec, undefined);
      assert.deepEqual(
        problems.map((p) => p.path),
        [[field]],
        'one problem, at that field (not also an "unrecognized key")',
      );
      assert.match(formatProblem(problems[0]!), new RegExp(`^${field}: owned by the platform policy`));
      assert.throws(
        () => parseSpec({ ...minimal, [field]: 1 }, 'deploy.yaml'),
        (error: unknown) => error instanceof SpecError && error.problems.some((p) => p.startsWith(`${field}: owned`)),
      );
    });

  it('names a policy-owned field at its line in the file, with the other problems of the spec', async () => {
    const found = await problems(`service: web
target: docker
image:
  repository: Not A Repo
environments:
  production:
    approval: { required: 0 }
kubeconfig: ~/.kube/config
`);
    assert.deepEqual(
      found.map((p) => p.replace(/: owned by the platform policy.*/, ': owned by the platform policy')),
      [
        'line 5: environments: owned by the platform policy',
        'line 8: kubeconfig: owned by the platform policy',
        'line 4: image.repository: expected an image repository without tag',
      ],
    );
  });

  it('refuses a __proto__ key as an unknown field, without taking policy fields from it', () => {
    const document: unknown = JSON.parse(
      JSON.stringify(minimal).replace(/^\{/, '{"__proto__": {"environments": {}, "approval": {"required": 0}},'),
    );
    const { spec, problems } = checkSpec(document);
    assert.equal(spec, undefined);
    assert.deepEqual(problems.map(formatProblem), ['(top level): Unrecognized key: "__proto__"']);
    assert.equal(({} as Record<string, unknown>).environments, undefined, 'no prototype was polluted');
  });

  it('refuses documents that are not objects without throwing', () => {
    for (const document of [null, undefined, 42, 'service: web', [minimal]]) {
      const { spec, problems } = checkSpec(document);
      assert.equal(spec, undefined);
      assert.ok(problems.length > 0, JSON.stringify(document));
    }
  });

  it('parses durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.throws(() => parseDuration('soon'), /not a duration/);
  });
});
