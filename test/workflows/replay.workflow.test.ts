/**
 * Runs in flight must survive a change of workflow code: approvals wait up to 24 h and a failed compensation stays
 * open for days. Every history in test/fixtures/histories (recorded on the real stack by `npm run record-histories`)
 * is replayed against the workflow code as built now; any nondeterminism fails its test.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { DefaultLogger, type ReplayResult, Runtime, Worker } from '@temporalio/worker';
import { workflowBundle } from '../support/temporal.js';

const HISTORIES = fileURLToPath(new URL('../../../test/fixtures/histories/', import.meta.url));
const files = readdirSync(HISTORIES)
  .filter((file) => file.endsWith('.json'))
  .sort();
/** The file name, without .json, serves as the workflow id of its replay. */
const idOf = (file: string): string => path.basename(file, '.json');

/** What must always be covered: each target's runs that wait long, and a finished manual rollback. */
const REQUIRED = ['approval-waiting', 'compensation-failed', 'manual-rollback'].flatMap((scenario) =>
  ['docker', 'kubernetes'].map((target) => `${target}-${scenario}`),
);

describe('replaying recorded workflow histories', { timeout: 300_000 }, () => {
  const results = new Map<string, ReplayResult>();

  before(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const histories = await Promise.all(
      files.map(async (file) => ({
        workflowId: idOf(file),
        history: JSON.parse(await readFile(path.join(HISTORIES, file), 'utf8')) as unknown,
      })),
    );
    const replay = Worker.runReplayHistories({ workflowBundle: await workflowBundle() }, histories);
    for await (const result of replay) results.set(result.workflowId, result);
  });

  it('finds a history of every scenario on both targets', () => {
    assert.ok(files.length >= REQUIRED.length, `expected at least ${REQUIRED.length} histories, found ${files.length}`);
    const missing = REQUIRED.filter((scenario) => !files.some((file) => file.startsWith(`${scenario}.`)));
    assert.deepEqual(missing, [], `no recorded history for ${missing.join(', ')} in ${HISTORIES}`);
  });

  for (const file of files)
    it(`replays ${file} without nondeterminism`, () => {
      const result = results.get(idOf(file));
      assert.ok(result, `${file} was not replayed`);
      if (result.error) throw result.error;
    });
});
