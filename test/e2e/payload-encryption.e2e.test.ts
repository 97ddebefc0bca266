/**
 * Payload encryption end to end: a real deploy through the CLI and the worker process on the dev server (Docker
 * target), with a vote by Update and one by Signal, then the raw history read by a client WITHOUT the codec: every
 * payload in it is ciphertext, and a marker value of the spec's plain env appears nowhere in it. With the keys, the
 * same history decodes (the marker is there) and replays. Without keys the worker and the CLI refuse to start.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { Worker } from '@temporalio/worker';
import { ENCRYPTED_ENCODING } from '../../codec/payload-codec.js';
import { parseDeploymentId } from '../../domain/deployment.js';
import { keyRingFromEnv } from '../../keys/key-ring.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';
import { voteSignal } from '../../workflows/messages.js';
import { deploymentIdIn, runCli, runWorkerProcess, waitForStatus } from '../support/cli.js';
import { encodingOf, payloadsIn, plaintextOf } from '../support/history-payloads.js';
import { testKeysEnv } from '../support/keys.js';
import { policyObject, specYaml, startTestTemporal, writeTestFiles } from '../support/spec-fixtures.js';
import { testClient, testDataConverter, workflowBundle } from '../support/temporal.js';

const WORKER = fileURLToPath(new URL('../../worker/main.js', import.meta.url));
const MARKER = 'plain-env-marker-9d41c7';

describe('payload encryption: a real deploy leaves only ciphertext in the history', { timeout: 600_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let temporal: DevStack;
  let env: Record<string, string>;
  let specFile: string;
  let policyFile: string;
  let worker: ChildProcess | undefined;
  let connection: Connection;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'deploy-encrypted-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    const repository = `${docker.registry.address}/web-shop`;
    await buildServiceImage(docker, { repository, version: '1.0.0', healthy: true });
    ({ specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ repository }, `container:\n  env:\n    SHOP_BANNER: ${MARKER}\n`),
      policy: policyObject({
        sourceRoots: [workDir],
        dockerHost: docker.engine.dockerHost,
        ports: { staging: await freePort(), production: await freePort() },
      }),
    }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile, { worker: false }));
    connection = await Connection.connect({ address: temporal.address });
  });

  after(async () => {
    if (worker && worker.exitCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGTERM');
      await exited;
    }
    await connection?.close();
    await temporal?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('refuses to start a worker or a CLI command without a key ring or codec endpoint (exit 2, naming the variables)', async () => {
    const noKeys = { TEMPORAL_ADDRESS: temporal.address, DEPLOY_AGENT_POLICY: policyFile, DEPLOY_AGENT_KEYS: '' };
    const workerRun = await runWorkerProcess(noKeys);
    assert.equal(workerRun.code, 2, workerRun.stderr);
    assert.match(workerRun.stderr, /no keys: set DEPLOY_AGENT_KEYS_FILE .* or DEPLOY_AGENT_KEYS/);
    const cliRun = await runCli(['list'], noKeys);
    assert.equal(cliRun.code, 2, cliRun.stderr);
    assert.match(cliRun.stderr, /no keys: set DEPLOY_AGENT_KEYS_FILE/);
    // The CLI has a second way: the codec server.
    assert.match(cliRun.stderr, /or DEPLOY_AGENT_CODEC_ENDPOINT to the URL of the codec server/);
  });

  it('deploys with the worker process and the CLI; the raw history holds ciphertext only', async () => {
    const log = openSync(join(workDir, 'worker.log'), 'a');
    worker = spawn(process.execPath, [WORKER], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        ...env,
        DEPLOY_AGENT_REPORTS_DIR: join(workDir, 'reports'),
        DEPLOY_AGENT_POLICY: policyFile,
      },
      stdio: ['ignore', log, log],
    });
    closeSync(log);

    const started = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.0.0'], env);
    assert.equal(started.code, 0, started.stderr);
    const id = deploymentIdIn(started.stdout);
    const { workflowId, runId } = parseDeploymentId(id);
    await waitForStatus(id, env, (s) => s.state === 'awaiting-approval');
    // A Signal's payload too: sent by a client with the codec, as any of the project's clients would.
    await testClient(connection).workflow.getHandle(workflowId, runId).signal(voteSignal, {
      approver: 'alice',
      decision: 'approve',
      comment: MARKER,
    });
    await waitForStatus(id, env, (s) => s.approval?.refused.some((r) => r.via === 'signal') ?? false);
    const approved = await runCli(['approve', id, '--comment', 'ship it'], { ...env, DEPLOY_AGENT_USER: 'alice' });
    assert.equal(approved.code, 0, approved.stderr);
    const final = await waitForStatus(id, env, (s) => s.finishedAt !== undefined);
    assert.equal(final.state, 'succeeded', JSON.stringify(final.errors));

    // Deliberately no codec: what anyone with read access to Temporal (or its database) gets.
    const raw = new Client({ connection, namespace: temporal.namespace });
    const history = await raw.workflow.getHandle(workflowId, runId).fetchHistory();
    const text = historyToJSON(history);
    const json = JSON.parse(text) as unknown;
    const payloads = payloadsIn(json);
    const kinds = new Set(
      payloads.map(({ path }) => path.replace(/^events\.\d+\./, '').replace(/\.\d+(\.|$)/g, '.*$1')),
    );
    for (const expected of [
      'workflowExecutionStartedEventAttributes.input.payloads.*',
      'activityTaskScheduledEventAttributes.input.payloads.*',
      'activityTaskCompletedEventAttributes.result.payloads.*',
      'workflowExecutionSignaledEventAttributes.input.payloads.*',
      'workflowExecutionUpdateAcceptedEventAttributes.acceptedRequest.input.args.payloads.*',
      'workflowExecutionUpdateCompletedEventAttributes.outcome.success.payloads.*',
      'workflowExecutionCompletedEventAttributes.result.payloads.*',
    ])
      assert.ok(kinds.has(expected), `the history has ${expected} (found ${[...kinds].join(', ')})`);
    // Patch markers are written by the SDK's core, outside the data converter: they hold a patch id of the workflow
    // code (like an event type), never user data. The marker check below covers them too.
    const patchMarker = /^events\.\d+\.markerRecordedEventAttributes\.details\.patch-data\./;
    const plain = payloads.filter(
      ({ path, payload }) => encodingOf(payload) !== ENCRYPTED_ENCODING && !patchMarker.test(path),
    );
    assert.deepEqual(
      plain.map(({ path, payload }) => `${path}: ${encodingOf(payload)}`),
      [],
      'every payload is encrypted',
    );
    assert.ok(!text.includes(MARKER), 'the marker appears in the raw history');
    assert.ok(!text.includes(Buffer.from(MARKER).toString('base64').slice(0, 16)), 'nor in base64');

    // With the keys it is all there: the marker went through the history, sealed.
    const keyRing = keyRingFromEnv({ DEPLOY_AGENT_KEYS: testKeysEnv().DEPLOY_AGENT_KEYS });
    const opened = await Promise.all(payloads.map(({ payload }) => plaintextOf(payload, keyRing)));
    assert.ok(
      opened.some((t) => t.includes(MARKER)),
      'the decrypted history holds the marker',
    );
    // And an encrypted history replays with the product's data converter.
    await Worker.runReplayHistory(
      { workflowBundle: await workflowBundle(), dataConverter: testDataConverter() },
      history,
      workflowId,
    );
  });
});
