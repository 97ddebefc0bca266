/**
 * The CLI and the worker reach Temporal through an mTLS front (nginx requiring a client certificate from its CA),
 * configured the way every Temporal tool is: TEMPORAL_* variables or a temporal.toml profile.
 *
 * The dev server has no TLS of its own: its port is plaintext on loopback, and anything local could bypass the front.
 * These tests prove the client side (certificates sent, server verified, refusals reported); that the server side
 * refuses a client without the right certificate is the proxy's doing, standing in for a server with mTLS.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Connection } from '@temporalio/client';
import { testClient } from '../support/temporal.js';
import { connectionSettings } from '../../client/settings.js';
import { TASK_QUEUE } from '../../domain/deployment.js';
import { startDevStack, type DevStack } from '../../stack/dev.js';
import { createCertificateAuthority, startMtlsFront, type MtlsFront } from '../../stack/nginx.js';
import { devPolicy, writePolicy } from '../../stack/policy.js';
import { freePort, sleep } from '../../stack/processes.js';
import { runCli } from '../support/cli.js';
import { testKeysEnv } from '../support/keys.js';

const WORKER = fileURLToPath(new URL('../../worker/main.js', import.meta.url));
const UNREACHABLE = 4;
const INVALID = 2;

describe('Temporal behind an mTLS front', { timeout: 300_000 }, () => {
  let workDir: string;
  let temporal: DevStack;
  let front: MtlsFront;
  /** Nothing of the machine's own Temporal configuration (a temporal.toml in the user's config directory). */
  let base: Record<string, string>;
  let mtls: Record<string, string>;
  let otherCa: string;
  let intruder: { certPath: string; keyPath: string };
  let worker: ChildProcess | undefined;
  let policyFile: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-mtls-'));
    policyFile = await writePolicy(join(workDir, 'policy.yaml'), devPolicy(workDir));
    temporal = await startDevStack({
      port: await freePort(),
      uiPort: await freePort(),
      reportsDir: join(workDir, 'reports'),
      policyFile,
      worker: false,
    });
    front = await startMtlsFront({ upstream: temporal.address, workDir: join(workDir, 'front') });
    const other = await createCertificateAuthority(join(workDir, 'other-ca'), 'another CA');
    otherCa = other.caPath;
    intruder = await other.issue('intruder', 'client');
    base = { XDG_CONFIG_HOME: join(workDir, 'config') };
    mtls = {
      ...base,
      TEMPORAL_ADDRESS: front.address,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: front.caPath,
      TEMPORAL_TLS_CLIENT_CERT_PATH: front.clientCertPath,
      TEMPORAL_TLS_CLIENT_KEY_PATH: front.clientKeyPath,
    };
  });

  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGKILL');
      await exited;
    }
    await front?.stop();
    await temporal?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  const withoutClientCertificate = (env: Record<string, string>) => {
    const rest = { ...env };
    delete rest.TEMPORAL_TLS_CLIENT_CERT_PATH;
    delete rest.TEMPORAL_TLS_CLIENT_KEY_PATH;
    return rest;
  };

  it('falls back to 127.0.0.1:7233, namespace default, no TLS when nothing is configured', () => {
    const saved = { ...process.env };
    try {
      for (const name of Object.keys(process.env)) if (name.startsWith('TEMPORAL_')) delete process.env[name];
      Object.assign(process.env, base);
      const settings = connectionSettings();
      assert.deepEqual(
        { address: settings.address, namespace: settings.namespace, tls: settings.tls, apiKey: settings.apiKey },
        { address: '127.0.0.1:7233', namespace: 'default', tls: undefined, apiKey: undefined },
      );
    } finally {
      for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
      Object.assign(process.env, saved);
    }
  });

  it('lists through the front with the certificate from TEMPORAL_TLS_* variables', async () => {
    const result = await runCli(['list'], mtls);
    assert.equal(result.code, 0, result.stderr);
    assert.match(await readFile(front.accessLog, 'utf8'), /ListWorkflowExecutions HTTP\/2\.0" 200 client-cert=SUCCESS/);
  });

  it('exits 4 saying the server refused it when no client certificate is sent', async () => {
    const result = await runCli(['list'], withoutClientCertificate(mtls));
    assert.equal(result.code, UNREACHABLE, result.stderr);
    assert.match(result.stderr, /the server refused this client's credentials: client certificate required/);
    assert.match(result.stderr, /sent no client certificate/);
  });

  it('exits 4 saying the server refused the certificate when another CA signed it', async () => {
    const result = await runCli(['list'], {
      ...mtls,
      TEMPORAL_TLS_CLIENT_CERT_PATH: intruder.certPath,
      TEMPORAL_TLS_CLIENT_KEY_PATH: intruder.keyPath,
    });
    assert.equal(result.code, UNREACHABLE, result.stderr);
    assert.match(result.stderr, /the server refused this client's credentials: client certificate refused: FAILED/);
    assert.ok(result.stderr.includes(intruder.certPath), result.stderr);
  });

  it('exits 4 saying the TLS handshake failed when the server is not trusted, or TLS is not configured', async () => {
    const untrusted = await runCli(['list'], { ...mtls, TEMPORAL_TLS_SERVER_CA_CERT_PATH: otherCa });
    assert.equal(untrusted.code, UNREACHABLE, untrusted.stderr);
    assert.match(untrusted.stderr, /TLS handshake failed: .*certificate/);

    const plaintext = await runCli(['list'], { ...base, TEMPORAL_ADDRESS: front.address });
    assert.equal(plaintext.code, UNREACHABLE, plaintext.stderr);
    assert.match(plaintext.stderr, /the server expects TLS, and none is configured/);
  });

  it('reads address and TLS files from a temporal.toml profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE)', async () => {
    const configFile = join(workDir, 'temporal.toml');
    await writeFile(
      configFile,
      `[profile.default]
address = "127.0.0.1:1"

[profile.behind-front]
address = "${front.address}"
namespace = "${temporal.namespace}"

[profile.behind-front.tls]
server_ca_cert_path = "${front.caPath}"
client_cert_path = "${front.clientCertPath}"
client_key_path = "${front.clientKeyPath}"
`,
    );
    const profile = { ...base, TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: 'behind-front' };
    const listed = await runCli(['list'], profile);
    assert.equal(listed.code, 0, listed.stderr);

    // The variables override the profile, as in every Temporal tool.
    const overridden = await runCli(['list'], {
      ...profile,
      TEMPORAL_TLS_CLIENT_CERT_PATH: intruder.certPath,
      TEMPORAL_TLS_CLIENT_KEY_PATH: intruder.keyPath,
    });
    assert.equal(overridden.code, UNREACHABLE, overridden.stderr);
    assert.match(overridden.stderr, /client certificate refused/);

    const mismatched = await runCli(['list'], { ...profile, TEMPORAL_TLS_CLIENT_CERT_PATH: intruder.certPath });
    assert.equal(mismatched.code, INVALID, mismatched.stderr);
    assert.match(mismatched.stderr, /Temporal connection settings: .*key values mismatch/);

    const missing = await runCli(['list'], { ...profile, TEMPORAL_PROFILE: 'nowhere' });
    assert.equal(missing.code, INVALID, missing.stderr);
    assert.match(
      missing.stderr,
      /Temporal connection settings \(TEMPORAL_CONFIG_FILE .*\): Profile 'nowhere' not found/,
    );
  });

  it('runs a worker that connects and polls through the front', async () => {
    const log: string[] = [];
    worker = spawn(process.execPath, [WORKER], {
      env: {
        PATH: process.env.PATH ?? '',
        ...testKeysEnv(),
        ...mtls,
        DEPLOY_AGENT_REPORTS_DIR: join(workDir, 'reports'),
        DEPLOY_AGENT_POLICY: policyFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    worker.stderr?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    await until(
      () => log.join('').includes(`worker polling ${front.address} namespace default`),
      60_000,
      () => log,
    );

    // A workflow type no worker has: its task reaches the worker only through a poll the front answered, and the
    // worker's refusal (WorkflowTaskFailed) goes back the same way. No target is needed for that.
    const connection = await Connection.connect({
      address: front.address,
      tls: {
        serverRootCACertificate: readFileSync(front.caPath),
        clientCertPair: { crt: readFileSync(front.clientCertPath), key: readFileSync(front.clientKeyPath) },
      },
    });
    try {
      const client = testClient(connection, temporal.namespace);
      const handle = await client.workflow.start('noSuchWorkflow', { taskQueue: TASK_QUEUE, workflowId: 'mtls-probe' });
      const identity = await until(
        async () => {
          const { events } = await handle.fetchHistory();
          return events?.find((event) => event.workflowTaskStartedEventAttributes)?.workflowTaskStartedEventAttributes
            ?.identity;
        },
        60_000,
        () => log,
      );
      assert.match(identity, new RegExp(`^${worker.pid}@`), 'the workflow task went to the worker process');
      await until(
        async () => (await handle.fetchHistory()).events?.some((event) => event.workflowTaskFailedEventAttributes),
        30_000,
        () => log,
      );
      await handle.terminate('probe done');
    } finally {
      await connection.close();
    }
    const access = await readFile(front.accessLog, 'utf8');
    const fromWorker = access.split('\n').filter((line) => !line.includes('grpc-node-js'));
    assert.ok(
      fromWorker.some((line) => /PollWorkflowTaskQueue HTTP\/2\.0" 200 client-cert=SUCCESS/.test(line)),
      access,
    );
    assert.ok(fromWorker.some((line) => /RespondWorkflowTaskFailed HTTP\/2\.0" 200 client-cert=SUCCESS/.test(line)));
  });
});

/** Polls until `probe` gives something truthy; bounded in time. */
async function until<T>(
  probe: () => T | Promise<T>,
  timeoutMs: number,
  context: () => string[],
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; Date.now() < deadline && attempt < timeoutMs / 100; attempt++) {
    const value = await probe();
    if (value) return value;
    await sleep(200);
  }
  throw new Error(`not within ${timeoutMs} ms; worker output:\n${context().join('')}`);
}
