import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadSpecFile } from '../../client/spec-file.js';
import { parseDuration } from '../../domain/duration.js';
import { budgetsOf, DEFAULT_BUDGETS, parseSpec, resolveEnvironment, SpecError } from '../../domain/spec.js';
import { specYaml } from '../support/spec-fixtures.js';

const base = { repository: '127.0.0.1:5000/web-shop', dockerHost: 'unix:///run/docker.sock', hostPort: 18080 };

describe('deployment spec', () => {
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
    await writeFile(file, specYaml({ ...base, sourceRepository: '../src/web-shop' }));
    const loaded = await loadSpecFile(file);
    assert.equal(loaded.spec.service, 'web-shop');
    assert.equal(loaded.spec.source?.repository, join(dir, '..', 'src', 'web-shop'));
    assert.equal(loaded.spec.container.port, 8080);
    assert.equal(loaded.spec.environments.production?.approval.deadline, 24 * 3_600_000);
    assert.equal(loaded.spec.healthCheck.interval, 200);
  });

  it('reports every problem at once, each with its line, path and expectation', async () => {
    const found = await problems(`service: Web_Shop
target: swarm
image:
  repository: Not A Repo
environments:
  staging:
    docker:
      host: localhost
      hostPort: 70000
    budgets:
      validate: two minutes
    surprise: true
`);
    assert.deepEqual(found, [
      'line 1: service: expected lowercase letters, digits and dashes (a DNS label)',
      'line 2: target: expected "docker" or "kubernetes"',
      'line 4: image.repository: expected an image repository without tag',
      'line 8: environments.staging.docker.host: expected unix://PATH or tcp://HOST:PORT',
      'line 9: environments.staging.docker.hostPort: expected a port number (1-65535)',
      'line 11: environments.staging.budgets.validate: expected a duration like 30s, 2m or 24h',
      'line 7: environments.staging: Unrecognized key: "surprise"',
    ]);
  });

  it('reports missing required fields', async () => {
    const found = await problems('service: web\n');
    assert.deepEqual(found, [
      'line 1: target: expected "docker" or "kubernetes"',
      'line 1: image: missing, expected object',
      'line 1: environments: missing, expected record',
    ]);
  });

  it("needs, for each environment, the connection block of the spec's target", async () => {
    const found = await problems(`service: web
target: kubernetes
image:
  repository: registry.example.com/web
environments:
  staging:
    docker:
      host: unix:///run/docker.sock
      hostPort: 8080
`);
    assert.deepEqual(found, [
      'line 1: release: missing, expected release.manifests for the kubernetes target',
      'line 7: environments.staging.kubernetes: missing, expected how to reach this environment with the kubernetes target',
    ]);
  });

  it('resolves a Kubernetes release and kubeconfig next to the spec file', async () => {
    const file = join(dir, 'kube.yaml');
    await writeFile(
      file,
      `service: web
target: kubernetes
image:
  repository: registry.example.com/web
release:
  manifests: ./k8s
environments:
  staging:
    kubernetes:
      kubeconfig: ./kubeconfig
      namespace: web
`,
    );
    const { spec } = await loadSpecFile(file);
    assert.equal(spec.release?.manifests, join(dir, 'k8s'));
    assert.equal(spec.environments.staging?.kubernetes?.kubeconfig, join(dir, 'kubeconfig'));
  });

  it('refuses YAML syntax errors with their line', async () => {
    const found = await problems('service: web\nimage: [unclosed\n');
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /^line \d+: YAML syntax/);
  });

  it('refuses an unreadable file', async () => {
    await assert.rejects(loadSpecFile(join(dir, 'missing.yaml')), (error: unknown) => {
      assert.ok(error instanceof SpecError);
      assert.match(error.problems[0] ?? '', /cannot be read/);
      return true;
    });
  });

  it('needs as many approvers as required approvals', async () => {
    const text = specYaml(base)
      .replace('approvers: [alice, bob]', 'approvers: [alice]')
      .replace('required: 1', 'required: 2');
    assert.deepEqual(await problems(text), [
      'line 23: environments.production.approval.approvers: needs at least as many approvers as required approvals',
    ]);
  });

  it('enforces production restrictions on protected environments', async () => {
    const text = specYaml(base).replace('required: 1', 'required: 0').replace('deployers: [ci-bot]', 'deployers: []');
    const found = await problems(text);
    assert.ok(
      found.some((p) =>
        /environments\.production\.approval\.required: a protected environment needs at least 1/.test(p),
      ),
    );
    assert.ok(found.some((p) => /environments\.production\.deployers: a protected environment needs a list/.test(p)));
  });

  it('refuses secrets written as plain configuration', async () => {
    const text = specYaml(base).replace(
      '      hostPort: 18080\n',
      '      hostPort: 18080\n      env:\n        DB_PASSWORD: hunter2\n',
    );
    const found = await problems(text);
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /environments\.staging\.docker\.env\.DB_PASSWORD: looks like a secret/);
    assert.ok(!found[0]?.includes('hunter2'), 'the secret value is not repeated');
  });

  it('names the defined environments when an unknown one is asked for', () => {
    const spec = parseSpec(
      {
        service: 'web',
        target: 'docker',
        image: { repository: 'r/web' },
        environments: { qa: { docker: { host: 'unix:///x', hostPort: 1 } } },
      },
      'deploy.yaml',
    );
    assert.throws(() => resolveEnvironment(spec, 'prod'), /environments\.prod: not defined \(defined: qa\)/);
  });

  it('lets an environment override time budgets and keeps the defaults otherwise', () => {
    const spec = parseSpec(
      {
        service: 'web',
        target: 'docker',
        image: { repository: 'r/web' },
        environments: { qa: { docker: { host: 'unix:///x', hostPort: 1 }, budgets: { validate: '10s' } } },
      },
      'deploy.yaml',
    );
    const budgets = budgetsOf(spec.environments.qa!);
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

  it('parses durations', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.throws(() => parseDuration('soon'), /not a duration/);
  });
});
