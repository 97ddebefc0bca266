/**
 * `npm run bench` at its smoke sizes, as its own process: the suites run, clean up and print their rows. Only the
 * table's shape is checked; its figures depend on the machine and are never asserted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const BENCH = fileURLToPath(new URL('../../bench/main.js', import.meta.url));

/** Each suite, and the operations it must print a comparison with the raw tool for. */
const SUITES: Record<string, RegExp[]> = {
  docker: [/^deploy \(Docker\)$/, /^rollback \(Docker\)$/],
  kubernetes: [/^deploy \(Kubernetes\)$/, /^rollback \(Kubernetes\)$/],
  concurrency: [/^p95 of concurrent vs single deploy$/],
  validation: [/^validate [\d,]+ manifests/],
  'change-tracking': [/^track changes over [\d,]+ commits/],
};

const FIGURE = /^\d+(\.\d+)? (ms|s)$/;
const RATIO = /^\d+\.\d\dx$/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runBench(args: string[], timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BENCH, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The table's rows as cells by column name. */
function tableRows(stdout: string): Record<string, string>[] {
  const lines = stdout.split('\n').filter((line) => line.startsWith('| '));
  const cells = (line: string) => line.slice(2, -2).split(' | ');
  const [header, separator, ...rows] = lines;
  assert.ok(header && separator, `no table in:\n${stdout}`);
  const names = cells(header);
  assert.deepEqual(names, ['operation', 'deploy-agent', 'raw tool', 'ratio', 'goal', 'notes']);
  return rows.map((row) => {
    const values = cells(row);
    assert.equal(values.length, names.length, `row with ${values.length} cells: ${row}`);
    return Object.fromEntries(names.map((name, index) => [name, values[index]!]));
  });
}

describe('npm run bench --smoke', () => {
  it('runs every suite: the comparisons with the raw tools, every concurrent deploy correct, exit 0', async () => {
    const run = await runBench(['--smoke'], 600_000);
    assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /^Machine: .+\nRuns: 1 per operation \(medians\), smoke\n/);
    const rows = tableRows(run.stdout);
    for (const row of rows) {
      assert.notEqual(row['deploy-agent'], 'failed', `${row.operation}: ${row.notes}`);
      assert.match(row.goal!, /^(-|.+ (met|NOT met))$/, `${row.operation}: goal`);
      if (row['raw tool'] === '-') assert.equal(row.ratio, '-', `${row.operation}: a ratio without a raw figure`);
      else assert.match(row.ratio!, RATIO, `${row.operation}: ratio`);
    }
    for (const [suite, operations] of Object.entries(SUITES))
      for (const operation of operations) {
        const row = rows.find((r) => operation.test(r.operation!));
        assert.ok(row, `${suite}: no row ${operation} in:\n${run.stdout}`);
        assert.match(row['deploy-agent']!, FIGURE, `${row.operation}: agent figure`);
        assert.match(row['raw tool']!, FIGURE, `${row.operation}: raw figure`);
      }
    const correct = rows.find((r) => r.operation === 'concurrent deploys correct');
    assert.match(correct?.['deploy-agent'] ?? '', /^(\d+)\/\1 succeeded$/, 'every concurrent deploy succeeded');
  });
});
