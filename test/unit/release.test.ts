import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareReleases, type ReleaseState } from '../../domain/release.js';
import { parseDeploymentId, deploymentIdOf } from '../../domain/deployment.js';

const release: ReleaseState = {
  present: true,
  handle: 'c1',
  imageDigest: 'sha256:a',
  configHash: 'sha256:c',
  running: true,
  version: '1.0.0',
};

describe('data-consistency verification', () => {
  it('is consistent when digest, configuration, container and run state match', () => {
    assert.equal(compareReleases(release, { ...release, version: 'label only' }).consistent, true);
  });
  it('names each field that differs', () => {
    const report = compareReleases(release, { ...release, imageDigest: 'sha256:b', running: false });
    assert.equal(report.consistent, false);
    assert.deepEqual(
      report.checks.filter((c) => !c.equal).map((c) => c.field),
      ['imageDigest', 'running'],
    );
  });
  it('expects nothing running when the rollback point was an empty environment', () => {
    assert.equal(
      compareReleases({ present: false, running: false }, { present: false, running: false }).consistent,
      true,
    );
    assert.equal(compareReleases({ present: false, running: false }, release).consistent, false);
  });
});

describe('deployment ids', () => {
  it('round-trip through service, environment and run id', () => {
    const id = deploymentIdOf('web-shop.production', '0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b');
    assert.deepEqual(parseDeploymentId(id), {
      workflowId: 'web-shop.production',
      runId: '0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
    });
    assert.throws(() => parseDeploymentId('web-shop'), /not a deployment id/);
  });
});
