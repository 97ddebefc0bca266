/**
 * Runs in flight must survive a change of workflow code: approvals wait up to 24 h and a failed compensation stays
 * open for days. Every history in test/fixtures/histories (recorded on the real stack by `npm run record-histories`)
 * is replayed against the workflow code as built now; any nondeterminism fails its test. Replays run with the product's
 * data converter: histories recorded before payloads were encrypted pass through its codec, later ones are opened
 * with the fixtures' own key ring (test/fixtures/payload-keys.json, which protects nothing but these recordings).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { dataConverter } from '../../codec/data-converter.js';
import { loadKeyRingFile } from '../../keys/key-ring.js';
import { plaintextOf } from '../support/history-payloads.js';
import { workflowBundle } from '../support/temporal.js';

const HISTORIES = fileURLToPath(new URL('../../../test/fixtures/histories/', import.meta.url));
const FIXTURE_KEYS = loadKeyRingFile(
  fileURLToPath(new URL('../../../test/fixtures/payload-keys.json', import.meta.url)),
);
const files = readdirSync(HISTORIES)
  .filter((file) => file.endsWith('.json'))
  .sort();
interface RecordedHistory {
  events: {
    workflowExecutionStartedEventAttributes?: {
      input?: { payloads?: { data?: string; metadata: Record<string, string> }[] };
    };
  }[];
}

/**
 * The workflow id the run had: a run checks that its id is the lock of its request, so a replay must use the same.
 * It is `<service>.<environment>` of the recorded input, whichever shape that input had.
 */
async function workflowIdOf(history: RecordedHistory): Promise<string> {
  const recorded = history.events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const data = recorded ? await plaintextOf(recorded, FIXTURE_KEYS) : '';
  const input = JSON.parse(data) as {
    target?: { service: string; environment: string };
    spec?: { service: string };
    environment?: string;
  };
  const service = input.target?.service ?? input.spec?.service;
  const environment = input.target?.environment ?? input.environment;
  return `${service}.${environment}`;
}

/** What must always be covered: each target's runs that wait long, and a finished manual rollback. */
const REQUIRED = ['approval-waiting', 'compensation-failed', 'manual-rollback'].flatMap((scenario) =>
  ['docker', 'kubernetes'].map((target) => `${target}-${scenario}`),
);

describe('replaying recorded workflow histories', { timeout: 300_000 }, () => {
  const results = new Map<string, { error?: Error }>();

  before(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    const histories = await Promise.all(
      files.map(async (file) => {
        const history = JSON.parse(await readFile(path.join(HISTORIES, file), 'utf8')) as RecordedHistory;
        return { file, history, workflowId: await workflowIdOf(history) };
      }),
    );
    // One replay per file: several runs of one lock share its workflow id.
    const bundle = await workflowBundle();
    for (const { file, history, workflowId } of histories)
      results.set(
        file,
        await Worker.runReplayHistory(
          { workflowBundle: bundle, dataConverter: dataConverter(FIXTURE_KEYS) },
          history,
          workflowId,
        ).then(
          () => ({ error: undefined }),
          (error: unknown) => ({ error: error instanceof Error ? error : new Error(String(error)) }),
        ),
      );
  });

  it('finds a history of every scenario on both targets', () => {
    assert.ok(files.length >= REQUIRED.length, `expected at least ${REQUIRED.length} histories, found ${files.length}`);
    const missing = REQUIRED.filter((scenario) => !files.some((file) => file.startsWith(`${scenario}.`)));
    assert.deepEqual(missing, [], `no recorded history for ${missing.join(', ')} in ${HISTORIES}`);
  });

  for (const file of files)
    it(`replays ${file} without nondeterminism`, () => {
      const result = results.get(file);
      assert.ok(result, `${file} was not replayed`);
      if (result.error) throw result.error;
    });
});
