import { z } from 'zod';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/** Milliseconds of a duration written like `90s`, `2m`, `24h`. */
export function parseDuration(text: string): number {
  const match = DURATION.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a duration like 30s, 2m or 24h`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

export function formatDuration(ms: number): string {
  if (ms % UNIT_MS.h === 0 && ms >= UNIT_MS.h) return `${ms / UNIT_MS.h}h`;
  if (ms % UNIT_MS.m === 0 && ms >= UNIT_MS.m) return `${ms / UNIT_MS.m}m`;
  if (ms % UNIT_MS.s === 0 && ms >= UNIT_MS.s) return `${ms / UNIT_MS.s}s`;
  if (ms >= UNIT_MS.s) return `${(ms / UNIT_MS.s).toFixed(1)}s`;
  return `${ms}ms`;
}

/** A duration field in a spec: written as text, carried as milliseconds. */
export const durationSchema = z
  .string({ error: 'expected a duration like 30s, 2m or 24h' })
  .regex(DURATION, { error: 'expected a duration like 30s, 2m or 24h' })
  .transform(parseDuration);
