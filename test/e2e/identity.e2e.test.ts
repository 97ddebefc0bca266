/**
 * Proven identities end to end: a real OpenID provider (Keycloak), the Temporal dev server, a Docker engine, and the
 * CLI run as CI and people run it. Every forged, foreign, expired or misaddressed token and every unauthorized vote
 * is refused with exit 2, and the target is left as it was.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Client, Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import Docker from 'dockerode';
import type { DeploymentStatus } from '../../domain/deployment.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';
import { statusQuery, voteSignal } from '../../workflows/messages.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import {
  AUDIENCE,
  CI_CLIENT,
  expiredToken,
  forgedToken,
  type OidcProvider,
  useKeycloak,
  userToken,
} from '../support/oidc.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  type TestTemporal,
  writeTestFiles,
} from '../support/spec-fixtures.js';

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

/** Keycloak names a client's service account this way. */
const CI_USER = `service-account-${CI_CLIENT.id}`;

describe(
  'proven identities: tokens verified by the worker against a real OpenID provider',
  { timeout: 900_000 },
  () => {
    let workDir: string;
    let docker: DockerStack;
    let engine: Docker;
    let oidc: OidcProvider;
    let stack: TestTemporal;
    let client: Client;
    let connection: Connection;
    let specFile: string;

    /** The CLI's environment for a raw token (what CI passes in DEPLOY_AGENT_TOKEN). */
    const withToken = (token: string) => ({ ...temporalEnv(), DEPLOY_AGENT_TOKEN: token });
    /** The CLI's environment for CI's client-credentials login. */
    const asCi = () => ({
      ...temporalEnv(),
      DEPLOY_AGENT_CLIENT_ID: CI_CLIENT.id,
      DEPLOY_AGENT_CLIENT_SECRET: CI_CLIENT.secret,
      DEPLOY_AGENT_OIDC_ISSUER: oidc.issuer(),
    });
    const temporalEnv = () => ({ TEMPORAL_ADDRESS: stack.temporal.address, TEMPORAL_UI_URL: stack.temporal.uiUrl });
    const deploy = (env: Record<string, string>, environment: string, version: string, wait = true) =>
      runCli(['deploy', '-f', specFile, '--env', environment, '--version', version, ...(wait ? ['--wait'] : [])], env);
    const stagingContainer = () =>
      engine
        .getContainer('web-shop_staging')
        .inspect()
        .catch(() => undefined);

    before(async () => {
      workDir = await mkdtemp(join(tmpdir(), 'deploy-identity-'));
      oidc = await useKeycloak();
      docker = await startLocalDockerStack(join(workDir, 'docker'));
      engine = new Docker({ socketPath: docker.engine.socketPath });
      const repository = `${docker.registry.address}/web-shop`;
      for (const version of ['1.0.0', '1.1.0']) await buildServiceImage(docker, { repository, version, healthy: true });
      await mkdir(join(workDir, 'reports'));
      const files = await writeTestFiles(workDir, {
        spec: specYaml({ repository }),
        policy: {
          identity: { oidc: { issuer: oidc.issuer(), audience: AUDIENCE } },
          sourceRoots: [workDir],
          environments: {
            staging: dockerEnvironment(
              docker.engine.dockerHost,
              { 'web-shop': await freePort() },
              {
                deployers: [CI_USER, 'alice'],
              },
            ),
            production: dockerEnvironment(
              docker.engine.dockerHost,
              { 'web-shop': await freePort() },
              {
                protected: true,
                deployers: [CI_USER],
                // Two approvals: a group member and a named user; the group's members are whoever the provider says.
                approval: { required: 2, approvers: ['group:approvers', 'alice'], deadline: '1h' },
                resolvers: ['group:sre'],
              },
            ),
          },
        },
      });
      specFile = files.specFile;
      stack = await startTestTemporal(workDir, files.policyFile);
      connection = await Connection.connect({ address: stack.temporal.address });
      client = testClient(connection, stack.temporal.namespace);
    });

    after(async () => {
      await connection?.close();
      await stack?.temporal.stop();
      await docker?.stop();
      await rm(workDir, { recursive: true, force: true });
    });

    const refusedRequest = async (env: Record<string, string>, expected: RegExp) => {
      const result = await deploy(env, 'staging', '1.0.0');
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.match(result.stdout + result.stderr, expected);
      assert.equal(await stagingContainer(), undefined, 'nothing was deployed');
      return result;
    };

    it('refuses a token signed by a key the provider does not have (exit 2, nothing changed)', async () => {
      await refusedRequest(withToken(await forgedToken(await userToken('alice'))), /token signature invalid/);
    });

    it('refuses a token of another issuer', async () => {
      await refusedRequest(
        withToken(await userToken('alice', { realm: 'other' })),
        /token issued by "[^"]+\/realms\/other", expected/,
      );
    });

    it('refuses an expired token', async () => {
      await refusedRequest(withToken(await expiredToken('alice')), /token expired at/);
    });

    it('refuses a token for another audience', async () => {
      await refusedRequest(
        withToken(await userToken('alice', { client: 'other-service' })),
        /expected deploy-agent: it was issued for another service/,
      );
    });

    it('refuses a verified user the policy does not name as a deployer, and audits it', async () => {
      const result = await refusedRequest(withToken(await userToken('dave')), /dave may not deploy to staging/);
      const status = JSON.parse(
        (await runCli(['status', deploymentIdIn(result.stdout), '--json'], temporalEnv())).stdout,
      ) as DeploymentStatus;
      assert.equal(status.requestedBy, 'dave');
      assert.ok(status.audit?.some((e) => e.action === 'request' && e.outcome === 'refused' && e.actor === 'dave'));
    });

    it('refuses a bare name (DEPLOY_AGENT_USER) on a worker that verifies tokens', async () => {
      await refusedRequest(
        { ...temporalEnv(), DEPLOY_AGENT_USER: 'alice' },
        /insecure dev identities are not accepted by this worker \("alice" is an unproven name\)/,
      );
    });

    it('deploys for CI with a client-credentials token; the report names the service account', async () => {
      const result = await deploy(asCi(), 'staging', '1.0.0');
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, new RegExp(`Requested by: ${CI_USER}`));
      assert.match(result.stdout, /Platform policy: sha256 [0-9a-f]{64}/);
      assert.doesNotMatch(result.stdout, /Insecure development mode/);
      assert.ok(await stagingContainer());
    });

    it('counts votes only from proven approvers: no self-approval, no strangers, no replayed token, no Signal', async () => {
      const started = await deploy(asCi(), 'production', '1.0.0', false);
      assert.equal(started.code, 0, started.stdout + started.stderr);
      const deploymentId = deploymentIdIn(started.stdout);
      const handle = client.workflow.getHandle(...(splitId(deploymentId) as [string, string]));
      await until(handle, (s) => s.state === 'awaiting-approval');
      const vote = (env: Record<string, string>, decision = 'approve') => runCli([decision, deploymentId], env);

      const self = await vote(asCi());
      assert.equal(self.code, 2, self.stderr);
      assert.match(self.stderr, new RegExp(`${CI_USER} requested this deployment and cannot approve it`));
      const stranger = await vote(withToken(await userToken('dave')));
      assert.equal(stranger.code, 2, stranger.stderr);
      assert.match(stranger.stderr, /dave may not approve in production/);
      const forged = await vote(withToken(await forgedToken(await userToken('bob'))));
      assert.equal(forged.code, 2, forged.stderr);
      await handle.signal(voteSignal, { approver: 'alice', decision: 'approve' });

      const bobsToken = await userToken('bob');
      const bob = await vote(withToken(bobsToken));
      assert.equal(bob.code, 0, bob.stderr);
      assert.match(bob.stdout, /1 of 2 approvals/);
      const replay = await vote(withToken(bobsToken));
      assert.equal(replay.code, 2, replay.stderr);
      assert.match(replay.stderr, /token was already used for a vote/);

      const alice = await vote(withToken(await userToken('alice')));
      assert.equal(alice.code, 0, alice.stderr);
      const status = await until(handle, (s) => s.state === 'succeeded');
      assert.deepEqual(
        status.approval?.votes.map((v) => v.approver),
        ['bob', 'alice'],
      );
      const refused = status.approval?.refused ?? [];
      assert.ok(
        refused.some((r) => r.via === 'signal' && /carries no proof/.test(r.reason)),
        JSON.stringify(refused),
      );
      assert.equal(refused.length, 5, JSON.stringify(refused));

      const audit = await runCli(['audit', '--env', 'production', '--json'], temporalEnv());
      assert.equal(audit.code, 0, audit.stderr);
      const events = JSON.parse(audit.stdout) as {
        action: string;
        outcome: string;
        actor: string;
        deploymentId: string;
      }[];
      const mine = events.filter((e) => e.deploymentId === deploymentId);
      assert.deepEqual(
        mine.filter((e) => e.outcome === 'accepted').map((e) => `${e.action} ${e.actor}`),
        [`request ${CI_USER}`, 'vote bob', 'vote alice'],
      );
      assert.equal(mine.filter((e) => e.action === 'vote' && e.outcome === 'refused').length, 5);
      // The tokens themselves are never part of what is kept.
      assert.doesNotMatch(JSON.stringify(status), /eyJ[A-Za-z0-9_-]{20,}/);
    });
  },
);

function splitId(deploymentId: string): string[] {
  const at = deploymentId.lastIndexOf('.');
  return [deploymentId.slice(0, at), deploymentId.slice(at + 1)];
}

async function until(
  handle: { query: (q: typeof statusQuery) => Promise<DeploymentStatus>; result: () => Promise<unknown> },
  done: (status: DeploymentStatus) => boolean,
): Promise<DeploymentStatus> {
  for (let attempt = 0; attempt < 600; attempt++) {
    const status = await handle.query(statusQuery).catch(() => undefined);
    if (status && done(status)) return status;
    if (status?.finishedAt && !done(status))
      throw new Error(`deployment ended ${status.state}: ${status.errors.join('; ')}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('the deployment did not get there in 2 minutes');
}
