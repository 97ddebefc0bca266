import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveRegistryImage } from '../../activities/registry.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';

describe('image resolution from a registry', { timeout: 300_000 }, () => {
  let workDir: string;
  let stack: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let repository: string;
  let digest: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'registry-test-'));
    stack = await startLocalDockerStack(join(workDir, 'docker'));
    repository = `${stack.registry.address}/web-shop`;
    digest = (await buildServiceImage(stack, { repository, version: '1.0.0', healthy: true })).digest;
  });
  after(async () => {
    await stack?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('pins a tag to the digest the registry serves', async () => {
    assert.deepEqual(await resolveRegistryImage(repository, '1.0.0'), { reference: `${repository}@${digest}`, digest });
  });

  it('reports a missing tag as invalid input', async () => {
    await assert.rejects(resolveRegistryImage(repository, '9.9.9'), (error: Error & { type?: string }) => {
      assert.equal(error.type, 'InvalidRelease');
      assert.match(error.message, /web-shop:9\.9\.9 was not found/);
      return true;
    });
  });

  it('reports a registry that does not answer as unreachable', async () => {
    const closed = `127.0.0.1:${await freePort()}/web-shop`;
    await assert.rejects(resolveRegistryImage(closed, '1.0.0'), (error: Error & { type?: string }) => {
      assert.equal(error.type, 'TargetUnreachable');
      return true;
    });
  });
});
