/**
 * The Docker target driver against a real engine and registry: live container names that two service/environment
 * pairs cannot share, containers of earlier releases under the legacy name `<service>-<environment>`, containers at
 * the live name that are not this release's, and how engine errors are classified for retries.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import { dockerDriver } from '../../activities/docker/driver.js';
import { LABEL, activeName, keptName, legacyName } from '../../activities/docker/engine.js';
import { fenceName } from '../../activities/docker/fence.js';
import { NON_RETRYABLE_TYPES, failureKinds } from '../../domain/failures.js';
import type { PinnedImage } from '../../domain/release.js';
import type { DockerTarget } from '../../domain/target.js';
import { containerSchema } from '../../domain/spec.js';
import { buildServiceImage, startLocalDockerStack, type LocalDockerStack } from '../../stack/docker.js';
import { freePort, sleep } from '../../stack/processes.js';

const CONTAINER_PORT = 8080;
const CONTAINER_DEFAULTS = containerSchema.parse({});
const BUILD_MS = 120_000;
const INVALID = failureKinds.invalid.type;

/** Rejects with an ApplicationFailure of that type; returns it for further checks. */
async function failureOf(promise: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    assert.equal(error.type, type, error.message);
    return error;
  }
  assert.fail(`expected a ${type} failure`);
}

/** Rejects with an error Temporal would retry: not an ApplicationFailure, or a retryable one. */
async function retryableErrorOf(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    if (error instanceof ApplicationFailure) assert.ok(!NON_RETRYABLE_TYPES.includes(error.type ?? ''), error.message);
    return error;
  }
  assert.fail('expected an error');
}

const deploymentOf = (service: string, environment: string): string => `${service}.${environment}.${randomUUID()}`;

void describe('Docker target driver', { timeout: 420_000 }, () => {
  let workDir: string;
  let stack: LocalDockerStack | undefined;
  let engine: Docker;
  const images = {} as Record<'v1' | 'v2' | 'noEntrypoint', PinnedImage>;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'docker-target-'));
    stack = await startLocalDockerStack(join(workDir, 'docker'));
    engine = stack.engine.client();
    const repository = `${stack.registry.address}/web-service`;
    for (const [key, version] of [
      ['v1', '1.0.0'],
      ['v2', '2.0.0'],
    ] as const) {
      const { digest } = await buildServiceImage(stack, { repository, version, healthy: true });
      images[key] = { reference: `${repository}@${digest}`, digest };
    }
    images.noEntrypoint = await buildImageWithoutEntrypoint(join(workDir, 'no-entrypoint'));
  });

  after(async () => {
    await stack?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** An image whose CMD names a file it does not contain, pushed so that apply can pull it by digest. */
  async function buildImageWithoutEntrypoint(dir: string): Promise<PinnedImage> {
    const repository = `${stack!.registry.address}/no-entrypoint`;
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'Dockerfile'), `FROM ${stack!.baseImage}\nCMD ["/no/such/entrypoint"]\n`);
    await follow(await engine.buildImage({ context: dir, src: ['Dockerfile'] }, { t: `${repository}:1` }));
    const pushed = await follow(await engine.getImage(`${repository}:1`).push({ tag: '1', authconfig: {} }));
    const digest = pushed.map((e) => e.aux?.Digest).find((d): d is string => typeof d === 'string');
    assert.ok(digest, 'the push reported a digest');
    return { reference: `${repository}@${digest}`, digest };
  }

  type Progress = { error?: string; aux?: { Digest?: string } };
  async function follow(stream: NodeJS.ReadableStream): Promise<Progress[]> {
    const events = await new Promise<Progress[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('image build or push took too long')), BUILD_MS);
      engine.modem.followProgress(stream, (error: Error | null, output: Progress[]) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(output);
      });
    });
    const failed = events.find((e) => e.error);
    if (failed) throw new Error(failed.error);
    return events;
  }

  async function targetOf(service: string, environment: string, env: Record<string, string> = {}) {
    return {
      kind: 'docker',
      service,
      environment,
      host: stack!.engine.dockerHost,
      hostIp: '127.0.0.1',
      hostPort: await freePort(),
      containerPort: CONTAINER_PORT,
      env: { SERVICE: service, ...env },
      historyLimit: 5,
    } satisfies DockerTarget;
  }

  async function containerAt(name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await engine.getContainer(name).inspect();
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
  }

  async function namedContainer(name: string): Promise<Docker.ContainerInspectInfo> {
    const info = await containerAt(name);
    assert.ok(info, `container ${name} exists`);
    return info;
  }

  async function volumeExists(name: string): Promise<boolean> {
    const { Volumes } = await engine.listVolumes();
    return (Volumes ?? []).some((volume) => volume.Name === name);
  }

  /** What the service on a host port says GET /version is, once it answers (bounded). */
  async function servedVersion(port: number): Promise<string> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 100; attempt++) {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/version`, { signal: AbortSignal.timeout(2_000) });
        if (response.ok) return (await response.text()).trim();
        lastError = new Error(`HTTP ${response.status}`);
      } catch (error) {
        lastError = error;
      }
      await sleep(100);
    }
    throw new Error(`GET /version on port ${port} failed: ${String(lastError)}`);
  }

  /** A container as the code before separators created it: legacy name, this target's labels, started or not. */
  async function createAsEarlierRelease(
    target: DockerTarget,
    name: string,
    labels: Record<string, string>,
    image: PinnedImage,
    start: boolean,
  ): Promise<Docker.ContainerInspectInfo> {
    const port = `${target.containerPort}/tcp`;
    const container = await engine.createContainer({
      name,
      Image: image.reference,
      Env: Object.entries(target.env).map(([key, value]) => `${key}=${value}`),
      ExposedPorts: { [port]: {} },
      Labels: labels,
      HostConfig: {
        PortBindings: start ? { [port]: [{ HostIp: target.hostIp, HostPort: String(target.hostPort) }] } : {},
        RestartPolicy: { Name: 'unless-stopped' },
      },
    });
    if (start) await container.start();
    return container.inspect();
  }

  const labelsFor = (target: DockerTarget, deploymentId: string, version: string): Record<string, string> => ({
    [LABEL.service]: target.service,
    [LABEL.environment]: target.environment,
    [LABEL.deploymentId]: deploymentId,
    [LABEL.version]: version,
  });

  it('names the live container with a separator service and environment names cannot contain', () => {
    const a = { service: 'web-shop', environment: 'prod' };
    const b = { service: 'web', environment: 'shop-prod' };
    assert.equal(legacyName(a), legacyName(b), 'the legacy names collide');
    assert.equal(activeName(a), 'web-shop_prod');
    assert.equal(activeName(b), 'web_shop-prod');
    assert.equal(keptName(a, 'web-shop.prod.8d2c1e4f-0b7a-4c61-9a1e-3f5a7c9e1b2d'), 'web-shop_prod.kept-3f5a7c9e1b2d');
    assert.equal(fenceName(a), 'web-shop_prod.fence');
    assert.notEqual(fenceName(a), fenceName(b));
    // Nor is a kept name ever the live name of another pair, as `<live>--<suffix>` could be.
    assert.notEqual(
      keptName({ service: 'web', environment: 'shop' }, 'web.shop.3f5a7c9e1b2d'),
      activeName({ service: 'web', environment: 'shop--3f5a7c9e1b2d' }),
    );
  });

  it('deploys two pairs whose legacy names collide side by side, each with its own container and rollback point', async () => {
    const a = await targetOf('web-shop', 'prod');
    const b = await targetOf('web', 'shop-prod');
    const [driverA, driverB] = [dockerDriver(a), dockerDriver(b)];
    const [a1, a2] = [deploymentOf('web-shop', 'prod'), deploymentOf('web-shop', 'prod')];
    const [b1, b2] = [deploymentOf('web', 'shop-prod'), deploymentOf('web', 'shop-prod')];

    await driverA.apply({ deploymentId: a1, version: '1.0.0', image: images.v1 });
    await driverB.apply({ deploymentId: b1, version: '2.0.0', image: images.v2 });
    const pointA = await driverA.snapshot(a2);
    const pointB = await driverB.snapshot(b2);
    assert.equal(pointA.deploymentId, a1);
    assert.equal(pointB.deploymentId, b1);
    await driverA.apply({ deploymentId: a2, version: '2.0.0', image: images.v2 });
    await driverB.apply({ deploymentId: b2, version: '1.0.0', image: images.v1 });

    const liveA = await namedContainer('web-shop_prod');
    const liveB = await namedContainer('web_shop-prod');
    assert.equal(liveA.Config.Labels[LABEL.deploymentId], a2);
    assert.equal(liveB.Config.Labels[LABEL.deploymentId], b2);
    assert.ok(liveA.State.Running && liveB.State.Running, 'both live containers run');
    assert.equal(await containerAt('web-shop-prod'), undefined, 'nothing under the shared legacy name');
    assert.equal(await servedVersion(a.hostPort), '2.0.0');
    assert.equal(await servedVersion(b.hostPort), '1.0.0');

    for (const [driver, live, kept, name] of [
      [driverA, a2, a1, keptName(a, a1)],
      [driverB, b2, b1, keptName(b, b1)],
    ] as const) {
      const releases = await driver.keptReleases();
      assert.equal(releases.live.deploymentId, live);
      assert.deepEqual(
        releases.kept.map((r) => r.deploymentId),
        [kept],
      );
      assert.equal((await namedContainer(name)).State.Running, false, `${name} is kept, stopped`);
      const report = await driver.inspect([]);
      assert.deepEqual(report.problems, []);
      assert.equal(report.current.deploymentId, live);
    }
    assert.ok(await volumeExists('web-shop_prod.fence'));
    assert.ok(await volumeExists('web_shop-prod.fence'));

    // Restoring one pair's rollback point leaves the other alone.
    await driverA.restore(pointA, { keepCurrent: true });
    assert.equal((await driverA.verify(pointA)).consistent, true);
    assert.equal(await servedVersion(a.hostPort), '1.0.0');
    const afterB = await namedContainer('web_shop-prod');
    assert.equal(afterB.Id, liveB.Id);
    assert.equal(afterB.State.StartedAt, liveB.State.StartedAt, 'the other pair was not restarted');
    assert.equal(await servedVersion(b.hostPort), '1.0.0');
    assert.deepEqual(
      (await driverB.keptReleases()).kept.map((r) => r.handle),
      [pointB.handle],
    );
  });

  it('finds a legacy-named container as the live release, and the next apply moves the release to the new name', async () => {
    const target = await targetOf('shop', 'stage');
    const driver = dockerDriver(target);
    const [older, old, next] = [
      'shop.stage.0000-older000001',
      'shop.stage.0000-earlier00001',
      deploymentOf('shop', 'stage'),
    ];
    const keptEarlier = await createAsEarlierRelease(
      target,
      `${legacyName(target)}--older000001`,
      labelsFor(target, older, '0.9.0'),
      images.v1,
      false,
    );
    const legacy = await createAsEarlierRelease(target, 'shop-stage', labelsFor(target, old, '1.0.0'), images.v1, true);
    assert.equal(await servedVersion(target.hostPort), '1.0.0');

    const report = await driver.inspect([]);
    assert.deepEqual(report.problems, []);
    assert.equal(report.current.handle, legacy.Id);
    const point = await driver.snapshot(next);
    assert.equal(point.handle, legacy.Id);
    assert.equal(point.deploymentId, old);
    const before = await driver.keptReleases();
    assert.equal(before.live.handle, legacy.Id);
    assert.deepEqual(
      before.kept.map((r) => r.handle),
      [keptEarlier.Id],
    );
    // A service that depends on it finds it running.
    const dependent = await dockerDriver(await targetOf('checkout', 'stage')).inspect(['shop', 'cart']);
    assert.deepEqual(dependent.problems, ['dependency cart is not running in stage']);

    const applied = await driver.apply({ deploymentId: next, version: '2.0.0', image: images.v2 });
    const live = await namedContainer('shop_stage');
    assert.equal(applied.handle, live.Id);
    assert.equal(live.Config.Labels[LABEL.deploymentId], next);
    assert.equal(await containerAt('shop-stage'), undefined, 'the legacy name is free');
    const retired = await namedContainer(legacy.Id);
    assert.equal(retired.Name, `/${keptName(target, old)}`);
    assert.equal(retired.State.Running, false);
    assert.equal(await servedVersion(target.hostPort), '2.0.0');
    assert.deepEqual(
      (await driver.keptReleases()).kept.map((r) => r.handle),
      [legacy.Id, keptEarlier.Id],
    );

    // The restore brings the earlier release's container back, under the new name.
    const restored = await driver.restore(point, { keepCurrent: false });
    assert.equal(restored.handle, legacy.Id);
    assert.equal((await namedContainer('shop_stage')).Id, legacy.Id);
    assert.equal(await containerAt('shop-stage'), undefined);
    const consistency = await driver.verify(point);
    assert.equal(consistency.consistent, true, JSON.stringify(consistency.checks));
    assert.equal(await servedVersion(target.hostPort), '1.0.0');
    assert.equal(await containerAt(live.Id), undefined, 'the failed release was removed');
  });

  it('moves a legacy-named live container to the new name on a restore of itself', async () => {
    const target = await targetOf('shop', 'dev');
    const driver = dockerDriver(target);
    const legacy = await createAsEarlierRelease(
      target,
      'shop-dev',
      labelsFor(target, 'shop.dev.0000-earlier00001', '1.0.0'),
      images.v1,
      true,
    );
    const point = await driver.snapshot(deploymentOf('shop', 'dev'));
    await driver.restore(point, { keepCurrent: true });
    const moved = await namedContainer('shop_dev');
    assert.equal(moved.Id, legacy.Id);
    assert.equal(moved.State.StartedAt, legacy.State.StartedAt, 'renamed, not restarted');
    assert.equal(await containerAt('shop-dev'), undefined);
    assert.equal((await driver.verify(point)).consistent, true);
    assert.deepEqual((await driver.keptReleases()).kept, []);
  });

  it('leaves a legacy-named container labelled for another service and environment alone', async () => {
    const owner = await targetOf('web-shop', 'uat');
    const target = await targetOf('web', 'shop-uat');
    const other = await createAsEarlierRelease(
      owner,
      'web-shop-uat',
      labelsFor(owner, 'web-shop.uat.0000-earlier00001', '1.0.0'),
      images.v1,
      true,
    );
    const driver = dockerDriver(target);
    const report = await driver.inspect([]);
    assert.deepEqual(report.problems, []);
    assert.equal(report.current.present, false);
    assert.equal((await driver.snapshot('x')).present, false);
    assert.deepEqual((await driver.keptReleases()).kept, []);

    await driver.apply({ deploymentId: deploymentOf('web', 'shop-uat'), version: '2.0.0', image: images.v2 });
    assert.equal((await namedContainer('web_shop-uat')).State.Running, true);
    const untouched = await namedContainer('web-shop-uat');
    assert.equal(untouched.Id, other.Id);
    assert.equal(untouched.State.Running, true);
    assert.equal(untouched.State.StartedAt, other.State.StartedAt);
    assert.equal(await servedVersion(owner.hostPort), '1.0.0');
    assert.equal(await servedVersion(target.hostPort), '2.0.0');
    // Its own target still finds it under the legacy name.
    assert.equal((await dockerDriver(owner).snapshot('x')).handle, other.Id);
  });

  it('refuses a container at the live name that is unlabelled or labelled for someone else, without touching it', async () => {
    const unlabelled = await targetOf('web-shop', 'qa');
    const otherService = await targetOf('api', 'qa');
    const otherEnvironment = await targetOf('search', 'qa');
    const cases = [
      {
        target: unlabelled,
        container: await createAsEarlierRelease(unlabelled, 'web-shop_qa', {}, images.v1, true),
        owner: /container web-shop_qa belongs to an unknown owner \(it has no deploy-agent\.service/,
      },
      {
        target: otherService,
        container: await createAsEarlierRelease(
          otherService,
          'api_qa',
          labelsFor({ ...otherService, service: 'billing' }, 'billing.qa.0000-other000001', '1.0.0'),
          images.v1,
          true,
        ),
        owner: /container api_qa belongs to service billing in environment qa, not to service api in environment qa/,
      },
      {
        target: otherEnvironment,
        container: await createAsEarlierRelease(
          otherEnvironment,
          'search_qa',
          labelsFor({ ...otherEnvironment, environment: 'dev' }, 'search.dev.0000-other000001', '1.0.0'),
          images.v1,
          true,
        ),
        owner:
          /container search_qa belongs to service search in environment dev, not to service search in environment qa/,
      },
    ];
    for (const { target, container, owner } of cases) {
      const driver = dockerDriver(target);
      const report = await driver.inspect([]);
      assert.ok(
        report.problems.some((p) => owner.test(p)),
        report.problems.join('; '),
      );
      assert.equal(report.current.present, false);
      assert.match((await failureOf(driver.snapshot('x'), INVALID)).message, owner);
      const refused = await failureOf(
        driver.apply({ deploymentId: deploymentOf(target.service, 'qa'), version: '2.0.0', image: images.v2 }),
        INVALID,
      );
      assert.match(refused.message, owner);
      assert.equal(refused.nonRetryable, true);
      assert.match(
        (await failureOf(driver.restore({ present: false, running: false }, { keepCurrent: false }), INVALID)).message,
        owner,
      );

      const afterwards = await namedContainer(container.Name.slice(1));
      assert.equal(afterwards.Id, container.Id);
      assert.equal(afterwards.State.Running, true, 'not stopped');
      assert.equal(afterwards.State.StartedAt, container.State.StartedAt, 'not restarted');
      assert.equal(await volumeExists(fenceName(target)), false, 'not even the fence was taken');
      const created = await engine.listContainers({
        all: true,
        filters: { label: [`${LABEL.service}=${target.service}`, `${LABEL.environment}=${target.environment}`] },
      });
      assert.deepEqual(created, [], 'no release was created');
    }
    assert.equal(await servedVersion(unlabelled.hostPort), '1.0.0');
  });

  it('refuses to restore a rollback point that is not labelled for the target', async () => {
    const target = await targetOf('cart', 'qa');
    const driver = dockerDriver(target);
    const stranger = await createAsEarlierRelease(target, 'stranger', {}, images.v1, false);
    await driver.apply({ deploymentId: deploymentOf('cart', 'qa'), version: '1.0.0', image: images.v1 });
    const live = await namedContainer('cart_qa');
    const refused = await failureOf(
      driver.restore({ present: true, handle: stranger.Id, running: true }, { keepCurrent: false }),
      INVALID,
    );
    assert.match(refused.message, /rollback point container stranger belongs to an unknown owner/);
    const still = await namedContainer('cart_qa');
    assert.equal(still.Id, live.Id);
    assert.equal(still.State.Running, true);
    assert.equal((await namedContainer('stranger')).State.Running, false);
  });

  it("creates the container with the spec's stop grace period, and says how long the one before took to stop", async () => {
    const target = {
      ...(await targetOf('graceful', 'qa')),
      container: { ...CONTAINER_DEFAULTS, stopGracePeriod: 1_000 },
    };
    const driver = dockerDriver(target);
    const first = await driver.apply({ deploymentId: deploymentOf('graceful', 'qa'), version: '1', image: images.v1 });
    const created = await namedContainer('graceful_qa');
    assert.equal((created.Config as { StopTimeout?: number }).StopTimeout, 1);
    assert.equal(first.previousStopMs, undefined, 'nothing ran before the first release');
    const second = await driver.apply({ deploymentId: deploymentOf('graceful', 'qa'), version: '2', image: images.v2 });
    assert.ok(Number.isInteger(second.previousStopMs) && second.previousStopMs! >= 0, String(second.previousStopMs));
    assert.equal((await containerAt(keptName(target, first.deploymentId!)))?.State.Running, false, 'kept, stopped');
  });

  it('fails apply with a non-retryable InvalidRelease when the entrypoint is missing, with the engine message', async () => {
    const target = await targetOf('broken', 'qa');
    const failure = await failureOf(
      dockerDriver(target).apply({
        deploymentId: deploymentOf('broken', 'qa'),
        version: '1',
        image: images.noEntrypoint,
      }),
      INVALID,
    );
    assert.equal(failure.nonRetryable, true);
    assert.ok(NON_RETRYABLE_TYPES.includes(INVALID));
    assert.match(failure.message, /^Docker engine could not start the container: .*\/no\/such\/entrypoint/);
    assert.doesNotMatch(failure.message, /HTTP code/);
    const container = await namedContainer('broken_qa');
    assert.equal(container.State.Running, false);
  });

  it('classifies engine answers: 4xx is InvalidRelease, not found and no engine are retried', async () => {
    const refusedEnv = await failureOf(
      dockerDriver(await targetOf('badenv', 'qa', { '': 'x' })).apply({
        deploymentId: deploymentOf('badenv', 'qa'),
        version: '1.0.0',
        image: images.v1,
      }),
      INVALID,
    );
    assert.equal(refusedEnv.nonRetryable, true);
    assert.match(refusedEnv.message, /^Docker engine refused: invalid environment variable: =x$/);
    assert.equal(await containerAt('badenv_qa'), undefined);

    const refusedReference = await failureOf(
      dockerDriver(await targetOf('badref', 'qa')).apply({
        deploymentId: deploymentOf('badref', 'qa'),
        version: '1.0.0',
        image: { reference: `${stack!.registry.address}/Web-Service@${images.v1.digest}`, digest: images.v1.digest },
      }),
      INVALID,
    );
    assert.match(refusedReference.message, /^Docker engine refused: invalid reference format/);

    // A manifest the registry does not have yet (404): worth another look, not the release's fault.
    const missing = `sha256:${'0'.repeat(64)}`;
    const notFound = await retryableErrorOf(
      dockerDriver(await targetOf('missing', 'qa')).apply({
        deploymentId: deploymentOf('missing', 'qa'),
        version: '1.0.0',
        image: { reference: `${stack!.registry.address}/web-service@${missing}`, digest: missing },
      }),
    );
    assert.equal((notFound as { statusCode?: number }).statusCode, 404);

    const gone = { ...(await targetOf('web-shop', 'qa')), host: `unix://${join(workDir, 'no-engine.sock')}` };
    const unreachable = await failureOf(dockerDriver(gone).inspect([]), failureKinds.unreachable.type);
    assert.equal(unreachable.nonRetryable, false);
  });
});
