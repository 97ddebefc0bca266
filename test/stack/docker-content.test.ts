/**
 * The Docker driver's plan and content check against a real engine and registry: what a release changes, read from
 * the live container by setting name, and an apply that refuses settings other than the approved ones.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { dockerDriver } from '../../activities/docker/driver.js';
import { failureKinds } from '../../domain/failures.js';
import type { PinnedImage } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { buildServiceImage, startLocalDockerStack, type LocalDockerStack } from '../../stack/docker.js';
import { freePort } from '../../stack/processes.js';

void describe('Docker release content and plan', { timeout: 420_000 }, () => {
  let workDir: string;
  let stack: LocalDockerStack | undefined;
  const images = {} as Record<'v1' | 'v2', PinnedImage>;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'docker-content-'));
    stack = await startLocalDockerStack(join(workDir, 'docker'));
    const repository = `${stack.registry.address}/web-service`;
    for (const [key, version] of [
      ['v1', '1.0.0'],
      ['v2', '2.0.0'],
    ] as const) {
      const { digest } = await buildServiceImage(stack, { repository, version, healthy: true });
      images[key] = { reference: `${repository}@${digest}`, digest };
    }
  });

  after(async () => {
    await stack?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('plans by setting name, sees an unchanged release as unchanged, and applies only the approved content', async () => {
    const target: DockerTarget = {
      kind: 'docker',
      service: 'planned',
      environment: 'prod',
      host: stack!.engine.dockerHost,
      hostIp: '127.0.0.1',
      hostPort: await freePort(),
      containerPort: 8080,
      env: { LOG_LEVEL: 'info', REGION: 'eu' },
      container: {
        secrets: {},
        resources: {},
        privileged: false,
        capabilities: [],
        hostNetwork: false,
        hostPid: false,
        mounts: [],
      },
      historyLimit: 5,
    };
    const driver = dockerDriver(target);
    const first = await driver.plan(images.v1);
    assert.equal(first.imageChanged, true);
    assert.deepEqual(first.configChanges, ['env.LOG_LEVEL', 'env.REGION', 'image', 'port']);
    const deploymentId = `planned.prod.${randomUUID()}`;
    await driver.apply({ deploymentId, version: '1.0.0', image: images.v1, contentHash: first.contentHash });

    const v1Live = await stack!.engine.client().getContainer('planned_prod').inspect();
    // The image's own variables (PATH) are not the release's settings: the same release shows no change.
    const again = await driver.plan(images.v1);
    assert.deepEqual(again.configChanges, []);
    assert.equal(again.unchanged, true);
    assert.equal(again.imageChanged, false);
    assert.equal(again.contentHash, first.contentHash);

    const changed = dockerDriver({ ...target, env: { ...target.env, LOG_LEVEL: 'debug' } });
    const configOnly = await changed.plan(images.v1);
    assert.deepEqual(configOnly.configChanges, ['env.LOG_LEVEL']);
    assert.equal(configOnly.imageChanged, false);
    assert.notEqual(configOnly.contentHash, first.contentHash);

    const newImage = await driver.plan(images.v2);
    assert.deepEqual(newImage.configChanges, ['image']);
    assert.equal(newImage.imageChanged, true);

    // Approved: the plan of v1 with LOG_LEVEL=info. Applying other settings is refused before anything changes.
    const refused = await changed
      .apply({
        deploymentId: `planned.prod.${randomUUID()}`,
        version: '1.0.0',
        image: images.v1,
        contentHash: first.contentHash,
      })
      .then(
        () => assert.fail('apply took content nobody approved'),
        (error: unknown) => error,
      );
    assert.ok(refused instanceof ApplicationFailure);
    assert.equal(refused.type, failureKinds.contentChanged.type);
    assert.equal(refused.nonRetryable, true);
    assert.match(refused.message, /container settings changed after validation and approval/);
    assert.doesNotMatch(refused.message, /debug|info/, 'no values in the refusal');
    const after = await stack!.engine.client().getContainer('planned_prod').inspect();
    assert.equal(after.Id, v1Live.Id, 'the live container is untouched');
    assert.equal(after.State.Running, true);
    assert.equal(after.State.StartedAt, v1Live.State.StartedAt);
  });
});
