/**
 * `npm run bench`: the agent against the raw tools doing the same work, on the same real stack as the tests.
 * A benchmark, not a test: it prints figures and ratios and asserts nothing about time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { changeTrackingSuite } from './change-tracking.js';
import { concurrencySuite } from './concurrency.js';
import { dockerSuite } from './docker.js';
import { kubernetesSuite } from './kubernetes.js';
import { type BenchOptions, type BenchRow, type BenchSuite, machineLine, renderTable } from './measure.js';
import { validationSuite } from './validation.js';

const SUITES: Record<string, BenchSuite> = {
  docker: dockerSuite,
  kubernetes: kubernetesSuite,
  concurrency: concurrencySuite,
  validation: validationSuite,
  'change-tracking': changeTrackingSuite,
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      runs: { type: 'string' },
      concurrency: { type: 'string' },
      only: { type: 'string', multiple: true },
    },
  });
  const smoke = values.smoke ?? false;
  const only = values.only ?? Object.keys(SUITES);
  const unknown = only.filter((name) => !(name in SUITES));
  if (unknown.length > 0) {
    process.stderr.write(
      `bench: unknown suite ${unknown.join(', ')}; expected one of ${Object.keys(SUITES).join(', ')}\n`,
    );
    return 2;
  }
  const workDir = await mkdtemp(join(tmpdir(), 'deploy-agent-bench-'));
  const options: BenchOptions = {
    smoke,
    runs: positive(values.runs, smoke ? 1 : 5, '--runs'),
    concurrency: positive(values.concurrency, smoke ? 5 : 200, '--concurrency'),
    workDir,
  };
  const rows: BenchRow[] = [];
  let failed = false;
  try {
    for (const name of only) {
      process.stderr.write(`bench: ${name}...\n`);
      try {
        rows.push(...(await SUITES[name]!({ ...options, workDir: join(workDir, name) })));
      } catch (error) {
        failed = true;
        rows.push({ operation: name, agent: 'failed', notes: error instanceof Error ? error.message : String(error) });
      }
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  process.stdout.write(`Machine: ${machineLine()}\n`);
  process.stdout.write(`Runs: ${options.runs} per operation (medians)${smoke ? ', smoke' : ''}\n\n`);
  process.stdout.write(`${renderTable(rows)}\n`);
  return failed ? 1 : 0;
}

function positive(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new Error(`bench: ${flag} expects a positive integer, got ${value}`);
  return parsed;
}

process.exitCode = await main();
