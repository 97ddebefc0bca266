/**
 * `npm run bench` at its smoke sizes, as its own process: the suites run, clean up and print their rows. Only the
 * table's shape is checked; its figures depend on the machine and are never asserted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const BENCH = fileURLToPath(new URL('../../bench/main.js', import.meta.url));

/** Each suite run here and how its rows' operations begin. */
const SUITES: Record<string, RegExp> = {
  validation: /^validate [\d,]+ manifests/,
  'change-tracking': /^track changes over [\d,]+ commits/,
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
  it('prints a row per operation of each suite, with figures and numeric ratios, and exits 0', async () => {
    const only = Object.keys(SUITES).flatMap((suite) => ['--only', suite]);
    const run = await runBench(['--smoke', ...only], 300_000);
    assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /^Machine: .+\nRuns: 1 per operation \(medians\), smoke\n/);
    const rows = tableRows(run.stdout);
    for (const [suite, operation] of Object.entries(SUITES)) {
      const own = rows.filter((row) => operation.test(row.operation!));
      assert.ok(own.length > 0, `no row of ${suite} in:\n${run.stdout}`);
      for (const row of own) {
        assert.match(row['deploy-agent']!, FIGURE, `${row.operation}: agent figure`);
        assert.match(row['raw tool']!, FIGURE, `${row.operation}: raw figure`);
        assert.match(row.ratio!, RATIO, `${row.operation}: ratio`);
        assert.match(row.goal!, /^(-|.+ (met|NOT met))$/, `${row.operation}: goal`);
      }
    }
    for (const row of rows) assert.notEqual(row['deploy-agent'], 'failed', `${row.operation}: ${row.notes}`);
  });
});
