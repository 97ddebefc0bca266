/**
 * The CLI without the key ring: a real OpenID provider (Keycloak), the Temporal dev server with a worker that holds
 * the keys, the codec server process (`deploy-agent codec-server`) holding them too, a Docker target, and the CLI as
 * CI runs it with DEPLOY_AGENT_CODEC_ENDPOINT and no keys. A payload reader deploys and reads statuses through the
 * codec server; a verified non-reader may start a deployment but not read one; no token, no codec; the history still
 * holds ciphertext only.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { ENCRYPTED_ENCODING } from '../../codec/payload-codec.js';
import { parseDeploymentId, type DeploymentStatus } from '../../domain/deployment.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { createCertificateAuthority } from '../../stack/nginx.js';
import { freePort, type ManagedProcess, startAndWait } from '../../stack/processes.js';
import { deploymentIdIn, runCli } from '../support/cli.js';
import { encodingOf, payloadsIn } from '../support/history-payloads.js';
import { testKeysEnv } from '../support/keys.js';
import { AUDIENCE, CI_CLIENT, type OidcProvider, useKeycloak, userToken } from '../support/oidc.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  type TestTemporal,
  writeTestFiles,
} from '../support/spec-fixtures.js';

const CLI = fileURLToPath(new URL('../../client/cli.js', import.meta.url));
const CI_USER = `service-account-${CI_CLIENT.id}`;
const MARKER = 'remote-codec-marker-3c8e1a';

describe('the CLI without keys encodes and decodes through the codec server', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let oidc: OidcProvider;
  let stack: TestTemporal;
  let codecServer: ManagedProcess | undefined;
  let codecUrl: string;
  let specFile: string;
  let policyFile: string;
  let ciDeployment: string;

  /** What a CLI user without the key ring has: Temporal's address, the codec endpoint, no keys. */
  const withoutKeys = (more: Record<string, string> = {}) => ({
    TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_UI_URL: stack.temporal.uiUrl,
    DEPLOY_AGENT_KEYS: '',
    DEPLOY_AGENT_CODEC_ENDPOINT: codecUrl,
    ...more,
  });
  const asCi = () =>
    withoutKeys({
      DEPLOY_AGENT_CLIENT_ID: CI_CLIENT.id,
      DEPLOY_AGENT_CLIENT_SECRET: CI_CLIENT.secret,
      DEPLOY_AGENT_OIDC_ISSUER: oidc.issuer(),
    });
  const deploy = (env: Record<string, string>, wait: boolean) =>
    runCli(['deploy', '-f', specFile, '--env', 'staging', '--version', '1.0.0', ...(wait ? ['--wait'] : [])], env);

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-remote-codec-'));
    oidc = await useKeycloak();
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    const repository = `${docker.registry.address}/web-shop`;
    await buildServiceImage(docker, { repository, version: '1.0.0', healthy: true });
    const files = await writeTestFiles(workDir, {
      spec: specYaml({ repository }, `container:\n  env:\n    SHOP_BANNER: ${MARKER}\n`),
      policy: {
        identity: { oidc: { issuer: oidc.issuer(), audience: AUDIENCE } },
        sourceRoots: [workDir],
        // CI reads what it deployed; dave may deploy to staging but read nothing.
        payloadReaders: [CI_USER],
        environments: {
          staging: dockerEnvironment(
            docker.engine.dockerHost,
            { 'web-shop': await freePort() },
            { deployers: [CI_USER, 'dave'] },
          ),
        },
      },
    });
    specFile = files.specFile;
    policyFile = files.policyFile;
    stack = await startTestTemporal(workDir, files.policyFile);
    const port = await freePort();
    codecUrl = `http://127.0.0.1:${port}`;
    codecServer = await startAndWait({
      name: 'codec-server',
      command: process.execPath,
      args: [CLI, 'codec-server', '--port', String(port), '--policy', files.policyFile],
      logFile: join(workDir, 'codec-server.log'),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...testKeysEnv() },
      ready: { probe: async () => (await fetch(`${codecUrl}/decode`, { method: 'POST' })).status === 401 },
    });
  });

  after(async () => {
    await codecServer?.stop();
    await stack?.temporal.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('deploys --wait and reads the status for CI (client credentials, a payload reader)', async () => {
    const deployed = await deploy(asCi(), true);
    assert.equal(deployed.code, 0, deployed.stdout + deployed.stderr);
    assert.match(deployed.stdout, new RegExp(`Requested by: ${CI_USER}`));
    ciDeployment = deploymentIdIn(deployed.stdout);
    const status = await runCli(['status', ciDeployment, '--json'], asCi());
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as DeploymentStatus;
    assert.equal(parsed.state, 'succeeded');
    assert.equal(parsed.requestedBy, CI_USER);
    // It was the codec server that sealed the request and opened the answers, for CI's identity.
    const log = await readFile(join(workDir, 'codec-server.log'), 'utf8');
    assert.match(log, new RegExp(`encode of \\d+ payloads for ${CI_USER}`));
    assert.match(log, new RegExp(`decode of \\d+ payloads for ${CI_USER}`));
  });

  it('lets a verified non-reader start a deployment, but refuses its status (exit 2, naming the codec server)', async () => {
    const dave = withoutKeys({ DEPLOY_AGENT_TOKEN: await userToken('dave') });
    const started = await deploy(dave, false);
    assert.equal(started.code, 0, started.stdout + started.stderr);
    const status = await runCli(['status', deploymentIdIn(started.stdout)], dave);
    assert.equal(status.code, 2, status.stdout + status.stderr);
    assert.match(status.stderr, new RegExp(`the codec server at ${codecUrl} refused: dave may not read payloads`));
    assert.ok(!status.stdout.includes(MARKER));
    // CI, a reader, sees that dave's request was judged like any other.
    const byCi = await runCli(['status', deploymentIdIn(started.stdout), '--json'], asCi());
    assert.equal(byCi.code, 0, byCi.stderr);
    assert.equal((JSON.parse(byCi.stdout) as DeploymentStatus).requestedBy, 'dave');
  });

  it('refuses without a token (exit 2) and says so when the codec server does not answer (exit 4)', async () => {
    const noToken = await runCli(['status', ciDeployment], withoutKeys());
    assert.equal(noToken.code, 2, noToken.stderr);
    assert.match(noToken.stderr, /the codec server at .* needs an OpenID token: set DEPLOY_AGENT_TOKEN/);
    const noTokenDeploy = await deploy(withoutKeys(), false);
    assert.equal(noTokenDeploy.code, 2, noTokenDeploy.stderr);
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await runCli(['status', ciDeployment], { ...asCi(), DEPLOY_AGENT_CODEC_ENDPOINT: nowhere });
    assert.equal(unreachable.code, 4, unreachable.stderr);
    assert.match(unreachable.stderr, new RegExp(`the codec server at ${nowhere} is unreachable: .*ECONNREFUSED`));
  });

  it('trusts an https codec server through DEPLOY_AGENT_CODEC_CA, and only then', async () => {
    const authority = await createCertificateAuthority(join(workDir, 'pki'), 'codec test CA');
    const { certPath, keyPath } = await authority.issue('codec', 'server');
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const server = await startAndWait({
      name: 'codec-server-tls',
      command: process.execPath,
      args: [CLI, 'codec-server', '--port', String(port), '--policy', policyFile].concat([
        '--tls-cert',
        certPath,
        '--tls-key',
        keyPath,
      ]),
      logFile: join(workDir, 'codec-server-tls.log'),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...testKeysEnv() },
      ready: { probe: () => listening(port) },
    });
    try {
      const trusted = await runCli(['status', ciDeployment], {
        ...asCi(),
        DEPLOY_AGENT_CODEC_ENDPOINT: url,
        DEPLOY_AGENT_CODEC_CA: authority.caPath,
      });
      assert.equal(trusted.code, 0, trusted.stderr);
      assert.match(trusted.stdout, /succeeded/);
      const untrusted = await runCli(['status', ciDeployment], { ...asCi(), DEPLOY_AGENT_CODEC_ENDPOINT: url });
      assert.equal(untrusted.code, 4, untrusted.stderr);
      assert.match(
        untrusted.stderr,
        new RegExp(`the codec server at ${url} is unreachable: .*certificate.*\\(trusting the system's CAs\\)`),
      );
    } finally {
      await server.stop();
    }
  });

  it("leaves ciphertext only in the raw history of CI's deployment", async () => {
    const connection = await Connection.connect({ address: stack.temporal.address });
    try {
      const { workflowId, runId } = parseDeploymentId(ciDeployment);
      // Deliberately no codec: what anyone with read access to Temporal gets.
      const raw = new Client({ connection, namespace: stack.temporal.namespace });
      const text = historyToJSON(await raw.workflow.getHandle(workflowId, runId).fetchHistory());
      const payloads = payloadsIn(JSON.parse(text) as unknown);
      assert.ok(
        payloads.some(({ path }) => /workflowExecutionStartedEventAttributes\.input/.test(path)),
        'the started event holds the input',
      );
      const patchMarker = /^events\.\d+\.markerRecordedEventAttributes\.details\.patch-data\./;
      const plain = payloads.filter(
        ({ path, payload }) => encodingOf(payload) !== ENCRYPTED_ENCODING && !patchMarker.test(path),
      );
      assert.deepEqual(
        plain.map(({ path }) => path),
        [],
        'every payload is encrypted',
      );
      assert.ok(!text.includes(MARKER), 'the marker appears in the raw history');
      assert.ok(!text.includes(Buffer.from(MARKER).toString('base64').slice(0, 16)), 'nor in base64');
    } finally {
      await connection.close();
    }
  });
});

/** Whether something accepts TCP connections on the loopback port (the TLS server, before anyone trusts it). */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
