/** What every benchmark suite shares: its options, the rows it prints, medians and formatting. */
import os from 'node:os';

export interface BenchOptions {
  /** A few moments of each suite, for CI: proves the suites run, says nothing about speed. */
  smoke: boolean;
  /** Repetitions of each timed operation; the table shows medians. */
  runs: number;
  /** Deploys started at once in the concurrency suite. */
  concurrency: number;
  /** Scratch space for this run; removed afterwards. */
  workDir: string;
}

/** One line of the table: the agent's figure beside the raw tool doing the same work, from the same run. */
export interface BenchRow {
  operation: string;
  /** The agent's figure, e.g. "1.45 s". */
  agent: string;
  /** The raw tool's figure for the same work, where there is one. */
  raw?: string;
  /** agent / raw, both medians. */
  ratio?: number;
  /** The goal, e.g. "≤ 1.3x", and whether this run met it. */
  goal?: string;
  met?: boolean;
  notes?: string;
}

export type BenchSuite = (options: BenchOptions) => Promise<BenchRow[]>;

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The value below which `fraction` of the values lie (nearest rank). */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) throw new Error('percentile of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

export function formatMs(ms: number): string {
  return ms >= 1_000 ? `${(ms / 1_000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}x`;
}

/** The machine the figures came from: they mean nothing without it. */
export function machineLine(): string {
  const cpus = os.cpus();
  const memory = `${Math.round(os.totalmem() / 2 ** 30)} GiB`;
  return `${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${memory}, ${os.type()} ${os.release()}, Node ${process.versions.node}`;
}

export function renderTable(rows: readonly BenchRow[]): string {
  const header = ['operation', 'deploy-agent', 'raw tool', 'ratio', 'goal', 'notes'];
  const cells = rows.map((row) => [
    row.operation,
    row.agent,
    row.raw ?? '-',
    row.ratio === undefined ? '-' : formatRatio(row.ratio),
    row.goal === undefined ? '-' : `${row.goal} ${row.met ? 'met' : 'NOT met'}`,
    row.notes ?? '',
  ]);
  const line = (values: string[]) => `| ${values.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...cells.map(line)].join('\n');
}
