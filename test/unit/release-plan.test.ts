/** The content and plan of a release, as pure logic: Docker settings by name, and the plan as approvers read it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type Docker from 'dockerode';
import {
  changedSettings,
  dockerContentHash,
  intendedSettings,
  liveSettings,
  memoryBytes,
} from '../../activities/docker/content.js';
import { planLines } from '../../domain/plan.js';
import { voteRequestSchema } from '../../domain/deployment.js';
import type { DockerTarget } from '../../domain/target.js';

const digest = `sha256:${'a'.repeat(64)}`;
const image = { reference: `registry.example/web@${digest}`, digest };
const target: DockerTarget = {
  kind: 'docker',
  service: 'web',
  environment: 'prod',
  host: 'unix:///docker.sock',
  hostIp: '127.0.0.1',
  hostPort: 18080,
  containerPort: 8080,
  env: { LOG_LEVEL: 'info' },
  container: {
    secrets: { DB_PASSWORD: 'db-password' },
    resources: { memory: '256m', cpus: 0.5 },
    user: '1000',
    privileged: false,
    capabilities: ['NET_BIND_SERVICE'],
    hostNetwork: false,
    hostPid: false,
    mounts: [{ source: '/srv/data', target: '/data', readOnly: true }],
  },
  historyLimit: 5,
};

/** A live container as the engine describes it, with what matters here. */
function inspected(env: string[], host: Record<string, unknown> = {}): Docker.ContainerInspectInfo {
  return {
    Id: 'c0ffee',
    Image: 'sha256:image-id',
    State: { Running: true },
    Config: { Image: image.reference, Env: env, User: '1000', Labels: {} },
    HostConfig: {
      PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '18080' }] },
      Memory: 256 * 2 ** 20,
      NanoCpus: 5e8,
      CapAdd: ['NET_BIND_SERVICE'],
      Binds: ['/srv/data:/data:ro'],
      ...host,
    },
  } as unknown as Docker.ContainerInspectInfo;
}

describe('Docker release content', () => {
  it('reads the live container as the same settings: image variables left out, secrets by reference', () => {
    const intended = intendedSettings(target, image);
    const live = liveSettings(
      inspected(['PATH=/usr/bin', 'LOG_LEVEL=info', 'DB_PASSWORD=s3cret']),
      ['PATH=/usr/bin'],
      intended,
    );
    assert.deepEqual(changedSettings(live, intended), []);
  });

  it("takes the image's own USER for no setting when the spec sets no user, and a changed user for one", () => {
    const live = (intended: Map<string, string>, imageUser: string) =>
      liveSettings(inspected(['LOG_LEVEL=info', 'DB_PASSWORD=s3cret']), [], intended, imageUser);
    const noUser = intendedSettings({ ...target, container: { ...target.container!, user: undefined } }, image);
    // The live container's user 1000 came from its image: the release sets none, and sets none now either.
    assert.deepEqual(changedSettings(live(noUser, '1000'), noUser), []);
    // The image says another user: 1000 was the spec's, and the new release no longer sets it.
    assert.deepEqual(changedSettings(live(noUser, 'nobody'), noUser), ['user']);
    // The spec sets the image's user explicitly: the same as what runs.
    const withUser = intendedSettings(target, image);
    assert.deepEqual(changedSettings(live(withUser, '1000'), withUser), []);
  });

  it('plans a changed stop grace period, and takes the engine default for none', () => {
    const settings = { ...target.container!, stopGracePeriod: 2_000 };
    const intended = intendedSettings({ ...target, container: settings }, image);
    const live = liveSettings(inspected(['LOG_LEVEL=info', 'DB_PASSWORD=s3cret']), [], intended, '1000');
    assert.deepEqual(changedSettings(live, intended), ['stopGracePeriod']);
    const usual = intendedSettings({ ...target, container: { ...settings, stopGracePeriod: 10_000 } }, image);
    assert.deepEqual(changedSettings(live, usual), []);
  });

  it('names each changed setting, never its value', () => {
    const intended = intendedSettings({ ...target, env: { LOG_LEVEL: 'debug', NEW: 'x' } }, image);
    const live = liveSettings(
      inspected(['LOG_LEVEL=info', 'OLD=y', 'DB_PASSWORD=s3cret'], { Privileged: true, NetworkMode: 'host' }),
      [],
      intended,
    );
    assert.deepEqual(changedSettings(live, intended), [
      'env.LOG_LEVEL',
      'env.NEW',
      'env.OLD',
      'hostNetwork',
      'privileged',
    ]);
  });

  it('hashes the settings, not the secret values: a rotated secret is the same content, a new reference is not', () => {
    const hash = dockerContentHash(target, image);
    assert.match(hash, /^sha256:[a-f0-9]{64}$/);
    assert.equal(dockerContentHash(structuredClone(target), image), hash);
    const otherSecret = { ...target, container: { ...target.container!, secrets: { DB_PASSWORD: 'other' } } };
    assert.notEqual(dockerContentHash(otherSecret, image), hash);
    assert.notEqual(dockerContentHash({ ...target, env: { LOG_LEVEL: 'debug' } }, image), hash);
    assert.notEqual(dockerContentHash(target, { ...image, digest: `sha256:${'b'.repeat(64)}` }), hash);
    // Runs from before the runtime settings: defaults are no settings, so nothing is reported changed for them.
    const bare = { ...target, container: undefined };
    assert.deepEqual(
      changedSettings(
        intendedSettings(bare, image),
        intendedSettings(
          {
            ...bare,
            container: {
              secrets: {},
              resources: {},
              privileged: false,
              capabilities: [],
              hostNetwork: false,
              hostPid: false,
              mounts: [],
            },
          },
          image,
        ),
      ),
      [],
    );
  });

  it('reads memory sizes as the engine records them', () => {
    assert.equal(memoryBytes('256m'), 256 * 2 ** 20);
    assert.equal(memoryBytes('1Gi'), 2 ** 30);
    assert.equal(memoryBytes('1024'), 1024);
  });
});

describe('release plan', () => {
  it('lists names and paths for approvers, with the hash their vote covers', () => {
    const lines = planLines({
      contentHash: digest,
      imageChanged: false,
      unchanged: false,
      objectChanges: {
        added: ['ConfigMap/a'],
        removed: ['Service/b'],
        changed: [{ object: 'Deployment/web', fields: ['spec.replicas'] }],
        unchanged: 2,
      },
      configChanges: [],
    });
    assert.deepEqual(lines, [
      `- Content hash: ${digest}`,
      '- Image changed: no',
      '- add ConfigMap/a',
      '- change Deployment/web: spec.replicas',
      '- remove Service/b',
      '- 2 objects unchanged',
    ]);
  });

  it('takes a vote with or without a content hash, and refuses a malformed one', () => {
    const credential = { kind: 'insecure-dev', user: 'alice' } as const;
    assert.ok(voteRequestSchema.safeParse({ decision: 'approve', credential }).success, 'votes of earlier runs');
    assert.ok(voteRequestSchema.safeParse({ decision: 'approve', credential, contentHash: digest }).success);
    const bad = voteRequestSchema.safeParse({ decision: 'approve', credential, contentHash: 'abc' });
    assert.match(JSON.stringify(bad.error?.issues), /expected a content hash like sha256:<64 hex digits>/);
  });
});
