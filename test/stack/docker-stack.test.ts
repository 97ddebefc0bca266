/**
 * The local Docker stack itself: a private engine and registry, the example service built healthy and unhealthy,
 * each run with its port published on 127.0.0.1 and checked over HTTP.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildServiceImage, startLocalDockerStack, type LocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';

describe('local Docker stack', { timeout: 300_000 }, () => {
  let workDir: string;
  let stack: LocalDockerStack | undefined;
  let bridge: string | undefined;
  const images: Record<string, { reference: string; digest: string }> = {};

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'docker-stack-'));
    stack = await startLocalDockerStack(join(workDir, 'docker'));
    bridge = stack.engine.bridge.name;
    const repository = `${stack.registry.address}/web-service`;
    images.healthy = await buildServiceImage(stack, { repository, version: '1.0.0', healthy: true });
    images.unhealthy = await buildServiceImage(stack, { repository, version: '2.0.0', healthy: false });
  });

  after(async () => {
    await stack?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  async function runService(name: string, image: string): Promise<number> {
    const port = await freePort();
    const container = await stack!.engine.client().createContainer({
      name,
      Image: image,
      ExposedPorts: { '8080/tcp': {} },
      HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
    });
    await container.start();
    return port;
  }

  async function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
    // The server needs a moment after the container starts; bounded retries on refused connections only.
    let lastError: unknown;
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(2_000) });
        return { status: response.status, body: await response.text() };
      } catch (error) {
        lastError = error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error(`GET ${urlPath} on port ${port} failed: ${String(lastError)}`);
  }

  it('pushes both versions to the local registry by digest', async () => {
    assert.match(images.healthy!.digest, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(images.healthy!.digest, images.unhealthy!.digest);
    const response = await fetch(`http://${stack!.registry.address}/v2/web-service/tags/list`);
    const tags = (await response.json()) as { tags: string[] };
    assert.deepEqual(tags.tags.sort(), ['1.0.0', '2.0.0']);
    const manifest = await fetch(`http://${stack!.registry.address}/v2/web-service/manifests/1.0.0`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(manifest.headers.get('docker-content-digest'), images.healthy!.digest);
  });

  it('serves /health 200 and /version from the healthy build', async () => {
    const repository = `${stack!.registry.address}/web-service`;
    const port = await runService('healthy', `${repository}@${images.healthy!.digest}`);
    assert.deepEqual(await get(port, '/health'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get(port, '/version'), { status: 200, body: '1.0.0\n' });
  });

  it('serves a 5xx /health from the unhealthy build', async () => {
    const port = await runService('unhealthy', images.unhealthy!.reference);
    const health = await get(port, '/health');
    assert.ok(health.status >= 500 && health.status < 600, `status ${health.status}`);
    assert.deepEqual(await get(port, '/version'), { status: 200, body: '2.0.0\n' });
  });

  it('binds published ports to loopback only', async () => {
    const containers = await stack!.engine.client().listContainers();
    const published = containers.flatMap((c) => c.Ports.filter((p) => p.PublicPort !== undefined));
    assert.ok(published.length >= 2);
    for (const port of published) assert.equal(port.IP, '127.0.0.1');
  });

  it('stops without leaving a process, mount or bridge behind', async () => {
    const engine = stack!.engine;
    await stack!.stop();
    const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' });
    assert.ok(!links.includes(`${bridge}:`), `bridge ${bridge} still exists`);
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(workDir), 'a mount under the work directory remains');
    const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    for (const marker of [workDir, dirname(engine.socketPath)])
      assert.ok(!processes.includes(marker), `a process mentions ${marker}`);
  });
});
