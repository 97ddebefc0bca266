/**
 * Change tracking on a real git repository: a long upgrade, a downgrade, a deployed version whose ref is gone, and a
 * requested version that does not exist. The lists are capped so that a large range cannot fill the history.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { trackChanges } from '../../activities/git.js';
import { FIRST_TAG, LAST_TAG, writeBenchHistory } from '../../bench/change-tracking-repository.js';

const run = promisify(execFile);
const COMMITS_IN_RANGE = 1_000;

describe('change tracking on a real repository', () => {
  let repository: string;
  const query = (fromVersion: string | undefined, toVersion: string) =>
    trackChanges({ repository, refPattern: 'v{version}', fromVersion, toVersion });

  before(async () => {
    repository = await mkdtemp(join(tmpdir(), 'deploy-changes-'));
    await writeBenchHistory(repository, COMMITS_IN_RANGE + 1);
  });
  after(async () => rm(repository, { recursive: true, force: true }));

  it('lists the first 200 commits of a long upgrade and at most 500 files, counting the files left out', async () => {
    const changes = await query('1.0.0', '2.0.0');
    // --numstat names a renamed file as the agent does: src/{old => new}.
    const { stdout } = await run('git', ['diff', '--numstat', FIRST_TAG, LAST_TAG], { cwd: repository });
    const changedFiles = stdout
      .trim()
      .split('\n')
      .map((line) => line.split('\t')[2]);
    assert.ok(changedFiles.length > 500, `the fixture changes more than 500 files (${changedFiles.length})`);
    assert.equal(changes.commits.length, 200);
    assert.equal(changes.truncated, true);
    assert.equal(changes.files.length, 500);
    assert.equal(changes.moreFiles, changedFiles.length - 500);
    const listed = changes.files.map((f) => f.path);
    assert.equal(new Set(listed).size, 500, 'no file listed twice');
    assert.deepEqual(
      listed.filter((path) => !changedFiles.includes(path)),
      [],
      'every file listed changed in the range',
    );
    assert.equal(changes.fromRef, FIRST_TAG);
    assert.equal(changes.toRef, LAST_TAG);
    assert.equal(changes.note, undefined);
  });

  it('finds no commits for a downgrade, and lists what the downgrade changes back', async () => {
    const changes = await query('2.0.0', '1.0.0');
    assert.deepEqual(changes.commits, []);
    assert.equal(changes.truncated, false);
    assert.equal(changes.note, 'no commits between the deployed and the requested version');
    assert.ok(changes.files.length > 0);
  });

  it("says so when the deployed version's ref is gone, and lists history up to the requested version", async () => {
    const changes = await query('0.9.0', '2.0.0');
    assert.equal(
      changes.note,
      "the deployed version's ref v0.9.0 is not in the repository: history up to the requested version",
    );
    assert.equal(changes.commits.length, 200);
    assert.equal(changes.truncated, true);
    assert.deepEqual(changes.files, []);
  });

  it('refuses a requested version whose ref does not exist, naming it', async () => {
    await assert.rejects(
      query('1.0.0', '3.0.0'),
      /git ref v3\.0\.0 \(version 3\.0\.0\) was not found in .*: no such commit$/,
    );
  });
});
