import assert from 'node:assert/strict';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure, type Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { awaitHealthy, type HealthProbe } from '../../activities/health.js';
import { failureKinds } from '../../domain/failures.js';
import type { HealthCheckSpec } from '../../domain/spec.js';

const HOST = '127.0.0.1';

/** The activity environment logs every failed activity; failing is what some of these tests expect. */
const quiet: Logger = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
const environment = () => new MockActivityEnvironment(undefined, { logger: quiet });

async function listening<T extends Server | HttpServer>(server: T, port = 0): Promise<T> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => resolve());
  });
  return server;
}

const portOf = (server: Server | HttpServer): number => (server.address() as AddressInfo).port;

async function closed(server: Server | HttpServer): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A port nothing listens on: one the system just handed out and took back. */
async function freePort(): Promise<number> {
  const server = await listening(createTcpServer());
  const port = portOf(server);
  await closed(server);
  return port;
}

function check(overrides: Partial<HealthCheckSpec>): HealthCheckSpec {
  return { type: 'http', path: '/health', timeout: 1_000, interval: 10, healthyWithin: 10_000, ...overrides };
}

/** Runs awaitHealthy in an activity context, recording its heartbeats. */
async function probe(health: HealthProbe): Promise<{ outcome: string | Error; heartbeats: unknown[] }> {
  const env = environment();
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => heartbeats.push(details));
  try {
    return { outcome: await env.run(awaitHealthy, health), heartbeats };
  } catch (error) {
    assert.ok(error instanceof Error);
    return { outcome: error, heartbeats };
  }
}

function unhealthy(outcome: string | Error): ApplicationFailure {
  assert.ok(outcome instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(outcome)}`);
  assert.equal(outcome.type, failureKinds.unhealthy.type);
  assert.equal(outcome.nonRetryable, true);
  return outcome;
}

/** Probes counted in the message of an Unhealthy failure. */
const probesIn = (failure: ApplicationFailure): number => Number(/\((\d+) probes; last: /.exec(failure.message)?.[1]);

describe('health checks', () => {
  /** Answers 503 to the first `failing` requests, then 200; counts the requests and remembers their paths. */
  let failing = 0;
  let requests: string[] = [];
  let server: HttpServer;
  let port: number;

  before(async () => {
    server = await listening(
      createHttpServer((request, response) => {
        requests.push(request.url ?? '');
        response.statusCode = requests.length <= failing ? 503 : 200;
        response.end();
      }),
    );
    port = portOf(server);
  });
  after(async () => closed(server));

  function serve(failures: number): void {
    failing = failures;
    requests = [];
  }

  it('is healthy on the first probe when the service answers 200 at once', async () => {
    serve(0);
    const { outcome, heartbeats } = await probe({ check: check({}), host: HOST, port });
    assert.equal(outcome, `healthy after 1 probe(s) of http ${HOST}:${port}`);
    assert.deepEqual(requests, ['/health']);
    assert.deepEqual(heartbeats, []);
  });

  it('probes the configured path', async () => {
    serve(0);
    const { outcome } = await probe({ check: check({ path: '/ready?full=1' }), host: HOST, port });
    assert.equal(outcome, `healthy after 1 probe(s) of http ${HOST}:${port}`);
    assert.deepEqual(requests, ['/ready?full=1']);
  });

  it('keeps probing through failing answers, heartbeating each failed probe, until the service is healthy', async () => {
    serve(3);
    const { outcome, heartbeats } = await probe({ check: check({}), host: HOST, port });
    assert.equal(outcome, `healthy after 4 probe(s) of http ${HOST}:${port}`);
    assert.equal(requests.length, 4);
    assert.deepEqual(heartbeats, [
      { attempts: 1, problem: 'HTTP 503 from /health' },
      { attempts: 2, problem: 'HTTP 503 from /health' },
      { attempts: 3, problem: 'HTTP 503 from /health' },
    ]);
  });

  it('fails as Unhealthy with the probe count and last problem when the service never becomes healthy', async () => {
    serve(Number.POSITIVE_INFINITY);
    const { outcome, heartbeats } = await probe({
      check: check({ interval: 20, healthyWithin: 200 }),
      host: HOST,
      port,
    });
    const failure = unhealthy(outcome);
    assert.match(failure.message, /^not healthy within 200ms \(\d+ probes; last: HTTP 503 from \/health\)$/);
    const probes = probesIn(failure);
    assert.ok(probes >= 2, `expected repeated probes, got ${probes}`);
    assert.equal(requests.length, probes);
    assert.equal(heartbeats.length, probes);
    assert.deepEqual(heartbeats.at(-1), { attempts: probes, problem: 'HTTP 503 from /health' });
  });

  it('probes once when the interval is longer than the time allowed to become healthy', async () => {
    serve(Number.POSITIVE_INFINITY);
    const { outcome, heartbeats } = await probe({
      check: check({ interval: 60_000, healthyWithin: 50 }),
      host: HOST,
      port,
    });
    assert.equal(unhealthy(outcome).message, 'not healthy within 50ms (1 probes; last: HTTP 503 from /health)');
    assert.equal(requests.length, 1);
    assert.deepEqual(heartbeats, [{ attempts: 1, problem: 'HTTP 503 from /health' }]);
  });

  it('reports an HTTP service that does not answer within the probe timeout', async () => {
    const silent = await listening(createHttpServer(() => undefined));
    try {
      const { outcome } = await probe({
        check: check({ timeout: 50, interval: 60_000, healthyWithin: 10 }),
        host: HOST,
        port: portOf(silent),
      });
      assert.match(unhealthy(outcome).message, /^not healthy within 10ms \(1 probes; last: .*timeout/i);
    } finally {
      await closed(silent);
    }
  });
});

describe('TCP health checks', () => {
  it('is healthy on the first probe when the port accepts connections', async () => {
    const server = await listening(createTcpServer((socket) => socket.destroy()));
    try {
      const { outcome, heartbeats } = await probe({ check: check({ type: 'tcp' }), host: HOST, port: portOf(server) });
      assert.equal(outcome, `healthy after 1 probe(s) of tcp ${HOST}:${portOf(server)}`);
      assert.deepEqual(heartbeats, []);
    } finally {
      await closed(server);
    }
  });

  it('becomes healthy once the port starts accepting connections', async () => {
    const port = await freePort();
    const server = createTcpServer((socket) => socket.destroy());
    let opening: Promise<unknown> | undefined;
    const env = environment();
    const heartbeats: { attempts: number; problem: string }[] = [];
    env.on('heartbeat', (details: { attempts: number; problem: string }) => {
      heartbeats.push(details);
      opening ??= listening(server, port);
    });
    try {
      const outcome = await env.run(awaitHealthy, { check: check({ type: 'tcp', interval: 20 }), host: HOST, port });
      assert.ok(heartbeats.length >= 1);
      assert.equal(outcome, `healthy after ${heartbeats.length + 1} probe(s) of tcp ${HOST}:${port}`);
      assert.match(heartbeats[0]?.problem ?? '', /ECONNREFUSED/);
    } finally {
      await opening;
      await closed(server);
    }
  });

  it('fails as Unhealthy with the refused connection as the last problem', async () => {
    const port = await freePort();
    const { outcome, heartbeats } = await probe({
      check: check({ type: 'tcp', interval: 20, healthyWithin: 100 }),
      host: HOST,
      port,
    });
    const failure = unhealthy(outcome);
    assert.match(failure.message, new RegExp(`^not healthy within 100ms \\(\\d+ probes; last: .*ECONNREFUSED`));
    assert.equal(heartbeats.length, probesIn(failure));
  });
});
