/**
 * End to end on the real stack: the Temporal dev server, a Docker engine and a registry, a git repository,
 * and the CLI run as CI runs it, judged by its exit codes. The worker judges requests by a platform policy of its
 * own; the spec the CLI sends says only what the service is.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import { simpleGit } from 'simple-git';
import type { AuditRow } from '../../client/audit.js';
import { parseDeploymentId, type DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort, sleep } from '../../stack/processes.js';
import { voteSignal } from '../../workflows/messages.js';
import { deploymentIdIn, runCli, runWorkerProcess } from '../support/cli.js';
import {
  dockerEnvironment,
  policyObject,
  specYaml,
  startTestTemporal,
  writeTestFiles,
} from '../support/spec-fixtures.js';

const UNVERIFIED = '(unverified, insecure dev mode)';
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

describe('deploys to Docker end to end', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: DockerStack;
  let temporal: DevStack;
  let engine: Docker;
  let specFile: string;
  let stagingPort: number;
  let env: Record<string, string>;
  const digests: Record<string, string> = {};
  /** Deployments the audit must show, by what happened to them. */
  const made: Record<string, string> = {};

  const as = (user: string) => ({ ...env, DEPLOY_AGENT_USER: user });
  const liveContainer = (environment: string) => engine.getContainer(`web-shop_${environment}`).inspect();
  const version = async (port: number) => (await fetch(`http://127.0.0.1:${port}/version`)).text();

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const repository = `${docker.registry.address}/web-shop`;
    for (const [v, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['2.0.0', false],
    ] as const)
      digests[v] = (await buildServiceImage(docker, { repository, version: v, healthy })).digest;

    const source = join(workDir, 'source');
    await mkdir(source);
    const git = simpleGit({ baseDir: source });
    await git.init().addConfig('user.name', 'Dev').addConfig('user.email', 'dev@example.com');
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) {
      await writeFile(join(source, `feature-${v}.txt`), `${v}\n`);
      await git.add('.').commit(`feature for ${v}`).addTag(`v${v}`);
    }

    stagingPort = await freePort();
    const policy = policyObject({
      sourceRoots: [workDir],
      dockerHost: docker.engine.dockerHost,
      ports: { staging: stagingPort, production: await freePort() },
      // An engine nobody runs: requests there must end unreachable before anything changes.
      more: {
        unreachable: dockerEnvironment(`unix://${join(workDir, 'no-engine.sock')}`, { 'web-shop': await freePort() }),
      },
    });
    let policyFile: string;
    ({ specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ repository, sourceRepository: './source' }),
      policy,
    }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile));
  });

  after(async () => {
    await temporal?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('deploys a version and reports it (exit 0)', async () => {
    const result = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '1.0.0', '--wait'],
      as('ci-bot'),
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /validate: succeeded/);
    assert.match(result.stdout, /track-changes: succeeded .* 1 commits/);
    assert.match(result.stdout, /http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\/web-shop\.staging\//);
    const live = await liveContainer('staging');
    assert.equal(live.Config.Image, `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('rolls back a release whose health check fails (exit 1) to the previous container, verified', async () => {
    const before = await liveContainer('staging');
    const result = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '2.0.0', '--wait', '--json'],
      as('ci-bot'),
    );
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as DeploymentStatus;
    assert.equal(status.state, 'rolled-back');
    assert.equal(status.rollback?.consistency?.consistent, true);
    assert.equal(status.requestedBy, `ci-bot ${UNVERIFIED}`);
    assert.equal(status.unverifiedIdentities, true);
    assert.match(status.policyHash ?? '', /^[0-9a-f]{64}$/, 'the report names the policy it was judged by');
    const after = await liveContainer('staging');
    assert.equal(after.Id, before.Id, 'the previous container runs again');
    assert.equal(after.Config.Image, `${docker.registry.address}/web-shop@${digests['1.0.0']}`);
    assert.ok(after.State.Running);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('rolls back manually to the previous release', async () => {
    const upgrade = await runCli(
      ['deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0', '--wait'],
      as('ci-bot'),
    );
    assert.equal(upgrade.code, 0, upgrade.stdout + upgrade.stderr);
    assert.equal(await version(stagingPort), '1.1.0\n');
    assert.match(upgrade.stdout, /apply: succeeded .* the release before took \d+(\.\d)?m?s to stop/);
    const rollback = await runCli(
      ['rollback', '-f', specFile, '--service', 'web-shop', '--env', 'staging', '--wait'],
      as('oncall'),
    );
    assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
    made.rollback = deploymentIdIn(rollback.stdout);
    assert.match(rollback.stdout, /Consistency|restore: succeeded/);
    assert.equal(await version(stagingPort), '1.0.0\n');
  });

  it('refuses self-approval, a vote by Signal and a concurrent deploy, then deploys once approved', async () => {
    const started = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.0.0'], as('ci-bot'));
    assert.equal(started.code, 0, started.stderr);
    const id = deploymentIdIn(started.stdout);
    made.approved = id;
    assert.equal(await runningDeployment('production'), id);
    const waiting = await runCli(['status', id, '--json'], env);
    assert.equal(waiting.code, 6, 'status of a deployment under way: still running');
    assert.equal((JSON.parse(waiting.stdout) as { state: string }).state, 'awaiting-approval');

    const self = await runCli(['approve', id], as('ci-bot'));
    assert.equal(self.code, 2);
    assert.match(self.stderr, /ci-bot requested this deployment and cannot approve it/);

    // A Signal proves nobody: even one naming an approver is recorded as refused and counts for nothing.
    const connection = await Connection.connect({ address: temporal.address });
    try {
      const { workflowId, runId } = parseDeploymentId(id);
      await testClient(connection)
        .workflow.getHandle(workflowId, runId)
        .signal(voteSignal, { approver: 'alice', decision: 'approve', comment: 'by signal' });
    } finally {
      await connection.close();
    }
    let afterSignal: DeploymentStatus | undefined;
    for (let attempt = 0; attempt < 100; attempt++) {
      afterSignal = JSON.parse((await runCli(['status', id, '--json'], env)).stdout) as DeploymentStatus;
      if (afterSignal.approval?.refused.some((r) => r.via === 'signal')) break;
      await sleep(200);
    }
    const bySignal = afterSignal?.approval?.refused.find((r) => r.via === 'signal');
    assert.match(bySignal?.reason ?? '', /a vote by Signal carries no proof of identity/, JSON.stringify(afterSignal));
    assert.equal(afterSignal?.state, 'awaiting-approval');
    assert.deepEqual(afterSignal?.approval?.votes, []);

    const second = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.1.0'], as('ci-bot'));
    assert.equal(second.code, 2);
    assert.match(second.stderr, new RegExp(`busy: deployment ${id.replaceAll('.', '\\.')}`));

    const approved = await runCli(['approve', id, '--comment', 'looks good'], as('alice'));
    assert.equal(approved.code, 0, approved.stderr);
    const final = await waitForEnd(id);
    assert.equal(final.code, 0, final.stdout);
    assert.match(final.stdout, /approve by alice .* via update: looks good/);
  });

  it('ends a rejected deploy with exit 3 without touching production', async () => {
    const before = await liveContainer('production');
    const waiting = runCli(
      ['deploy', '-f', specFile, '--env', 'production', '--version', '1.1.0', '--wait'],
      as('ci-bot'),
    );
    const id = await runningDeployment('production');
    made.rejected = id;
    const rejected = await runCli(['reject', id, '--comment', 'not during the sale'], as('bob'));
    assert.equal(rejected.code, 0, rejected.stderr);
    const result = await waiting;
    assert.equal(result.code, 3, result.stdout + result.stderr);
    assert.match(result.stdout, /rejected by bob: not during the sale/);
    assert.equal((await liveContainer('production')).Id, before.Id);
  });

  it('exits 4 when the Docker engine is unreachable, with nothing changed', async () => {
    const result = await runCli(
      ['deploy', '-f', specFile, '--env', 'unreachable', '--version', '1.1.0', '--wait', '--json'],
      as('ci-bot'),
    );
    assert.equal(result.code, 4, result.stdout + result.stderr);
    const status = JSON.parse(result.stdout) as { state: string; errors: string[]; phases: { name: string }[] };
    assert.equal(status.state, 'unreachable');
    assert.match(status.errors.join('\n'), /Docker engine unix:\/\/.*no-engine\.sock is unreachable/);
    assert.ok(!status.phases.some((p) => p.name === 'apply'));
  });

  it('exits 4 when Temporal is unreachable, and 2 on an invalid spec', async () => {
    const closed = await freePort();
    const unreachable = await runCli(['deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0'], {
      TEMPORAL_ADDRESS: `127.0.0.1:${closed}`,
    });
    assert.equal(unreachable.code, 4, unreachable.stderr);
    const bad = join(workDir, 'bad.yaml');
    await writeFile(bad, 'service: web\n');
    const invalid = await runCli(['validate', '-f', bad], env);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /bad\.yaml: line 1: target: expected "docker" or "kubernetes"/);
  });

  it('refuses a spec carrying policy-owned fields (exit 2), naming file, line and field, and starts nothing', async () => {
    const owned = join(workDir, 'policy-owned.yaml');
    const text = specYaml(
      { repository: `${docker.registry.address}/web-shop` },
      `environments:
  staging:
    docker:
      host: unix:///var/run/docker.sock
      hostPort: ${stagingPort}
approval:
  required: 0
`,
    );
    await writeFile(owned, text);
    // The key's line, or the next: the locator names where a block value starts, the line after its key.
    const lineOf = (field: string) => {
      const key = text.split('\n').indexOf(`${field}:`) + 1;
      return `(${key}|${key + 1})`;
    };
    const before = await deploymentsOf('staging');
    const live = await liveContainer('staging');

    for (const args of [
      ['deploy', '-f', owned, '--env', 'staging', '--version', '1.1.0', '--wait'],
      ['validate', '-f', owned],
    ]) {
      const result = await runCli(args, as('ci-bot'));
      assert.equal(result.code, 2, `${args[0]}: ${result.stdout}${result.stderr}`);
      for (const field of ['environments', 'approval'])
        assert.match(
          result.stderr,
          new RegExp(`${escape(owned)}: line ${lineOf(field)}: ${field}: owned by the platform policy`),
        );
    }
    assert.deepEqual(await deploymentsOf('staging'), before, 'no deployment was started');
    assert.equal((await liveContainer('staging')).Id, live.Id);
  });

  it('a worker refuses to start (exit 2) with an invalid policy, naming the file, line and path', async () => {
    const bad = join(workDir, 'bad-policy.yaml');
    await writeFile(
      bad,
      `identity:
  insecureDevMode: true
sourceRoots: [${workDir}]
environments:
  staging:
    docker:
      host: ${docker.engine.dockerHost}
      ports:
        web-shop: 70000
`,
    );
    const problem = new RegExp(`${escape(bad)}: line 9: environments\\.staging\\.docker\\.ports\\.web-shop: `);
    const viaEnvironment = await runWorkerProcess({ TEMPORAL_ADDRESS: temporal.address, DEPLOY_AGENT_POLICY: bad });
    assert.equal(viaEnvironment.code, 2, viaEnvironment.stdout + viaEnvironment.stderr);
    assert.match(viaEnvironment.stderr, problem);
    assert.doesNotMatch(viaEnvironment.stdout, /worker polling/);
    const viaFlag = await runCli(['worker', '--policy', bad], { TEMPORAL_ADDRESS: temporal.address });
    assert.equal(viaFlag.code, 2, viaFlag.stdout + viaFlag.stderr);
    assert.match(viaFlag.stderr, problem);
    const without = await runWorkerProcess({ TEMPORAL_ADDRESS: temporal.address });
    assert.equal(without.code, 2, without.stdout + without.stderr);
    assert.match(without.stderr, /no platform policy: pass --policy FILE or set DEPLOY_AGENT_POLICY/);
  });

  it('ends invalid (exit 2) when source.repository lies outside sourceRoots, even through a link, with nothing changed', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'deploy-e2e-outside-'));
    try {
      await simpleGit({ baseDir: outside }).init();
      const link = join(workDir, 'escape');
      await symlink(outside, link);
      const live = await liveContainer('staging');
      for (const [name, repository] of [
        ['outside.yaml', outside],
        ['linked.yaml', './escape'],
      ] as const) {
        const file = join(workDir, name);
        await writeFile(
          file,
          specYaml({ repository: `${docker.registry.address}/web-shop`, sourceRepository: repository }),
        );
        const result = await runCli(
          ['deploy', '-f', file, '--env', 'staging', '--version', '1.1.0', '--wait', '--json'],
          as('ci-bot'),
        );
        assert.equal(result.code, 2, `${name}: ${result.stdout}${result.stderr}`);
        const status = JSON.parse(result.stdout) as DeploymentStatus;
        assert.equal(status.state, 'invalid');
        const shown = repository === outside ? outside : link;
        assert.match(
          status.errors.join('\n'),
          new RegExp(
            `source\\.repository ${escape(shown)} is outside the directories the platform policy lets the worker ` +
              `read \\(sourceRoots: ${escape(workDir)}\\)`,
          ),
        );
        assert.ok(!status.phases.some((p) => p.name === 'apply'), `${name}: nothing was applied`);
      }
      const after = await liveContainer('staging');
      assert.equal(after.Id, live.Id);
      assert.ok(after.State.Running);
      assert.equal(await version(stagingPort), '1.0.0\n');
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('refuses (exit 2) an environment the policy does not define, and a requester it does not name', async () => {
    const unknown = await runCli(
      ['deploy', '-f', specFile, '--env', 'qa', '--version', '1.1.0', '--wait', '--json'],
      as('ci-bot'),
    );
    assert.equal(unknown.code, 2, unknown.stdout + unknown.stderr);
    const status = JSON.parse(unknown.stdout) as DeploymentStatus;
    assert.equal(status.state, 'invalid');
    assert.match(
      status.errors.join('\n'),
      /environment qa is not defined by the platform policy \(defined: staging, production, unreachable\)/,
    );

    const before = await liveContainer('production');
    const stranger = await runCli(
      ['deploy', '-f', specFile, '--env', 'production', '--version', '1.1.0', '--wait', '--json'],
      as('mallory'),
    );
    assert.equal(stranger.code, 2, stranger.stdout + stranger.stderr);
    const refused = JSON.parse(stranger.stdout) as DeploymentStatus;
    made.refused = refused.deploymentId;
    assert.equal(refused.state, 'invalid');
    assert.match(refused.errors.join('\n'), /mallory may not deploy to production \(deployers: ci-bot\)/);
    assert.equal((await liveContainer('production')).Id, before.Id);
  });

  it('audit lists who requested and voted on each deployment, and why; --since in the future lists none', async () => {
    const result = await runCli(['audit', '--service', 'web-shop', '--json'], env);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const rows = JSON.parse(result.stdout) as AuditRow[];
    const text = JSON.stringify(rows, null, 2);
    const of = (id: string | undefined) => rows.filter((r) => r.deploymentId === id);
    // Names only: whether a vote's actor carries the dev-mode marker is the workflow's to say, asserted for requests.
    const eventsOf = (id: string | undefined) =>
      of(id).map((r) => [r.action, r.outcome, r.actor.replace(` ${UNVERIFIED}`, '')].join(' '));
    assert.deepEqual(
      rows.map((r) => r.at),
      rows.map((r) => r.at).sort(),
      'oldest first',
    );
    assert.ok(
      rows.every((r) => r.service === 'web-shop'),
      text,
    );
    for (const r of rows.filter((row) => row.action === 'request'))
      assert.ok(r.actor.endsWith(UNVERIFIED), `a request's actor says it was not proven: ${r.actor}`);

    const ciBot = `ci-bot ${UNVERIFIED}`;
    assert.deepEqual(eventsOf(made.approved), [
      'request accepted ci-bot',
      'vote refused ci-bot',
      // The Signal named alice, but proved nothing: nobody is audited as its sender.
      'vote refused (unproven)',
      'vote accepted alice',
    ]);
    const approved = of(made.approved);
    assert.equal(approved[0]?.reason, `deploy: ${ciBot} may deploy in production`);
    assert.match(
      approved[1]?.reason ?? '',
      /^approve by update: ci-bot requested this deployment and cannot approve it/,
    );
    assert.match(
      approved[2]?.reason ?? '',
      /^approve by signal: a vote by Signal carries no proof of identity \(it claimed to be alice\)/,
    );
    assert.equal(approved[3]?.reason, 'approve by update');
    assert.match(approved[0]?.policyHash ?? '', /^[0-9a-f]{64}$/);

    assert.deepEqual(eventsOf(made.rejected), ['request accepted ci-bot', 'vote accepted bob']);
    assert.equal(of(made.rejected)[1]?.reason, 'reject by update');

    assert.deepEqual(eventsOf(made.rollback), ['request accepted oncall'], text);
    assert.equal(of(made.rollback)[0]?.reason, `rollback: oncall ${UNVERIFIED} may rollback in staging`);

    assert.deepEqual(eventsOf(made.refused), ['request refused mallory']);
    assert.match(of(made.refused)[0]?.reason ?? '', /mallory may not deploy to production \(deployers: ci-bot\)/);

    // Every deploy to staging above was requested by ci-bot, and recorded so.
    const staging = rows.filter((r) => r.environment === 'staging' && r.action === 'request' && r.actor === ciBot);
    assert.ok(staging.length >= 3, text);

    const future = await runCli(['audit', '--service', 'web-shop', '--json', '--since', '2999-01-01T00:00:00Z'], env);
    assert.equal(future.code, 0, future.stdout + future.stderr);
    assert.deepEqual(JSON.parse(future.stdout), []);
  });

  async function deploymentsOf(environment: string): Promise<string[]> {
    const list = await runCli(['list', '--env', environment, '--json'], env);
    assert.equal(list.code, 0, list.stderr);
    return (JSON.parse(list.stdout) as { deploymentId: string }[]).map((r) => r.deploymentId).sort();
  }

  async function waitForEnd(id: string) {
    for (let attempt = 0; attempt < 120; attempt++) {
      const result = await runCli(['status', id], env);
      if (!/: (running|awaiting-approval|compensating)\n/.test(result.stdout)) return result;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`deployment ${id} did not end`);
  }

  async function runningDeployment(environment: string): Promise<string> {
    for (let attempt = 0; attempt < 120; attempt++) {
      const list = await runCli(['list', '--env', environment, '--json'], env);
      const rows = JSON.parse(list.stdout || '[]') as { deploymentId: string; status: string }[];
      const open = rows.find((r) => r.status === 'awaiting-approval');
      if (open) return open.deploymentId;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    throw new Error(`no deployment awaiting approval in ${environment}`);
  }
});
