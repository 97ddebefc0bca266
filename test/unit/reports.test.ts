import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileNameOf, reportActivities } from '../../activities/reports.js';
import type { DeploymentStatus } from '../../domain/deployment.js';

describe('report files', () => {
  let root: string;
  let reportsDir: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'reports-'));
    reportsDir = join(root, 'reports');
  });
  after(() => rm(root, { recursive: true, force: true }));

  const status = (deploymentId: string): DeploymentStatus => ({
    deploymentId,
    kind: 'deploy',
    service: 'web-shop',
    environment: 'staging',
    version: '1.0.0',
    requestedBy: 'ci-bot',
    startedAt: '2026-12-02T00:00:00.000Z',
    state: 'succeeded',
    phase: 'report',
    phases: [],
    checks: [],
    errors: [],
  });

  it('names the files after the deployment id', async () => {
    const id = 'web-shop.staging.01a23522-6db6-7626-a5d9-58986dae6a17';
    const path = await reportActivities(reportsDir).publishReport(status(id));
    assert.equal(path, join(reportsDir, `${id}.md`));
  });

  it('keeps a hostile workflow id inside the reports directory', async () => {
    for (const hostile of ['../../escaped', '/etc/passwd', '..', 'a/../../b'])
      assert.equal(dirname(join(reportsDir, fileNameOf(hostile))), reportsDir, hostile);
    await reportActivities(reportsDir).publishReport(status('../escaped.x'));
    assert.deepEqual((await readdir(root)).sort(), ['reports'], 'nothing was written beside the reports directory');
  });
});
