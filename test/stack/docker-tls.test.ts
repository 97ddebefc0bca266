/**
 * A Docker engine reached over the network, as a policy's `docker: { host: tcp://…, tls: { ca, cert, key } }` says:
 * the engine requires a client certificate from its CA (`--tlsverify`), and the worker talks to it only through the
 * target activities. What a worker without the right certificate gets must end a deployment, not keep it waiting.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { inspectEnvironment, snapshotRelease } from '../../activities/targets/index.js';
import { failureKinds } from '../../domain/failures.js';
import type { DockerTarget } from '../../domain/target.js';
import { startDockerEngine, type TlsDockerEngine } from '../../stack/docker.js';
import { createCertificateAuthority } from '../../stack/nginx.js';
import { freePort } from '../../stack/processes.js';

const FORBIDDEN = failureKinds.forbidden.type;

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    return error;
  }
  assert.fail('expected the engine to refuse');
}

void describe('Docker target over TLS', { timeout: 60_000 }, () => {
  let workDir: string;
  let engine: TlsDockerEngine | undefined;
  let foreignClient: { cert: string; key: string };

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'docker-tls-'));
    const [started, foreign] = await Promise.all([
      startDockerEngine(join(workDir, 'engine'), { tls: true }),
      createCertificateAuthority(join(workDir, 'foreign-ca'), 'deploy-agent foreign test CA'),
    ]);
    engine = started;
    const issued = await foreign.issue('client', 'client');
    foreignClient = { cert: issued.certPath, key: issued.keyPath };
  });

  after(async () => {
    await engine?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  // The driver keeps one engine client per host and client certificate for the worker's life: each case below
  // differs in those, so that none of them is answered by another case's connection settings.
  async function targetOf(tls: DockerTarget['tls']): Promise<DockerTarget> {
    return {
      kind: 'docker',
      service: 'web',
      environment: 'remote',
      host: engine!.tlsHost,
      ...(tls && { tls }),
      hostIp: '127.0.0.1',
      hostPort: await freePort(),
      containerPort: 8080,
      env: {},
      historyLimit: 2,
    };
  }

  it('inspects the environment through the engine’s TLS port with the client certificate of its CA', async () => {
    assert.match(engine!.tlsHost, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    const target = await targetOf(engine!.tls);
    const report = await inspectEnvironment(target, []);
    assert.match(report.description, /^Docker \d+\.\d+\S*, API \d+\.\d+$/);
    assert.deepEqual(report.problems, []);
    assert.equal(report.current.present, false);
    assert.deepEqual(await snapshotRelease(target, 'web.remote.tls'), { present: false, running: false });
  });

  it('is refused without TLS: not retried, naming the engine and the policy setting to fix', async () => {
    const failure = await errorOf(inspectEnvironment(await targetOf(undefined), []));
    assert.ok(failure instanceof ApplicationFailure, `expected an ApplicationFailure, got ${failure.stack}`);
    assert.equal(failure.type, FORBIDDEN, failure.message);
    assert.equal(failure.nonRetryable, true);
    assert.match(
      failure.message,
      new RegExp(`Docker engine ${engine!.tlsHost} \\(environments\\.remote\\.docker\\.tls`),
    );
    assert.match(failure.message, /requires TLS and the policy gives the worker no client certificate/);
  });

  it('is refused with a client certificate from another CA: the handshake fails, named, not retried', async () => {
    const failure = await errorOf(inspectEnvironment(await targetOf({ ca: engine!.tls.ca, ...foreignClient }), []));
    assert.ok(failure instanceof ApplicationFailure, `not a failure of the vocabulary: ${failure.message}`);
    assert.equal(failure.type, FORBIDDEN, failure.message);
    assert.equal(failure.nonRetryable, true);
    assert.match(failure.message, new RegExp(`Docker engine ${engine!.tlsHost} .*TLS handshake failed: ERR_SSL`));
  });

  it('verifies the engine against the CA its own target names, whatever an earlier target used', async () => {
    const foreign = join(workDir, 'foreign-ca', 'ca.pem');
    // The same host and client certificate as the first case, which left its client behind: a target that
    // does not trust the engine's CA must still be refused.
    const failure = await errorOf(inspectEnvironment(await targetOf({ ...engine!.tls, ca: foreign }), []));
    assert.match(failure.message, /TLS handshake failed: (UNABLE_TO_VERIFY|SELF_SIGNED|DEPTH_ZERO|CERT_)/);
  });
});
