/**
 * Following a deployment until CI can be told something it can act on: how it ended, that an operator is needed
 * (compensation failed, or Temporal itself ended the run), that it is still running when `--timeout` runs out, or
 * that its outcome is unknown because Temporal stopped answering.
 */
import { setTimeout as delay } from 'node:timers/promises';
import {
  CancelledFailure,
  TerminatedFailure,
  TimeoutFailure,
  type WorkflowHandle,
  WorkflowFailedError,
} from '@temporalio/client';
import type { DeploymentStatus } from '../domain/deployment.js';
import { EXIT, EXIT_CODES, messageOf } from '../domain/failures.js';
import { phaseLine } from '../domain/report.js';
import { statusQuery } from '../workflows/messages.js';
import { notReached } from './connection.js';
import { heartbeats, printLine } from './output.js';

const POLL_MS = 1_000;

/** What it means when Temporal ended a run itself (terminated, timed out), said the same way everywhere. */
export const ENDED_BY_TEMPORAL = 'no report was written and the target may be half-changed';
/** Consecutive polls Temporal may miss before the outcome is declared unknown. */
const UNREACHABLE_POLLS = 10;

export type Outcome =
  /** Ended, or waiting for an operator in compensation-failed: the status says which. */
  | { kind: 'status'; status: DeploymentStatus }
  /** Temporal ended the run itself (terminated, timed out, cancelled): no report, an operator must look. */
  | { kind: 'ended-by-temporal'; how: string; last?: DeploymentStatus }
  | { kind: 'still-running'; last?: DeploymentStatus }
  | { kind: 'unknown'; why: string; last?: DeploymentStatus };

export function exitCodeOf(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'status':
      return EXIT_CODES[outcome.status.state];
    case 'ended-by-temporal':
      return EXIT.operatorNeeded;
    case 'still-running':
      return EXIT.stillRunning;
    case 'unknown':
      return EXIT.outcomeUnknown;
  }
}

/** One line for CI's log about an outcome without a report. */
export function describeOutcome(outcome: Outcome): string {
  const last =
    outcome.kind !== 'status' && outcome.last ? ` (last seen ${outcome.last.state}, phase ${outcome.last.phase})` : '';
  switch (outcome.kind) {
    case 'status':
      return outcome.status.state;
    case 'ended-by-temporal':
      return `operator needed: Temporal ended the run (${outcome.how}), so ${ENDED_BY_TEMPORAL}${last}`;
    case 'still-running':
      return `still running when --timeout ran out${last}`;
    case 'unknown':
      return `outcome unknown: ${outcome.why}; the deployment may still be running${last}`;
  }
}

/** How Temporal ended a run that did not end by itself, from the failure `result()` rejects with. */
function endedByTemporal(error: unknown): string | undefined {
  const cause = error instanceof WorkflowFailedError ? error.cause : undefined;
  if (cause instanceof TerminatedFailure) return `terminated${cause.message ? ` (${cause.message})` : ''}`;
  if (cause instanceof TimeoutFailure) return 'timed out';
  if (cause instanceof CancelledFailure) return 'cancelled';
  return undefined;
}

export interface FollowOptions {
  /** Print each phase as it starts and ends, and the live progress of running activities. */
  live: boolean;
  timeoutMs?: number;
}

/** Follows a deployment to an outcome; never waits past compensation-failed, which needs an operator. */
export async function follow(handle: WorkflowHandle, options: FollowOptions): Promise<Outcome> {
  type Settled = { status: DeploymentStatus } | { error: unknown };
  let settled: Settled | undefined;
  const result = handle.result().then(
    (status: DeploymentStatus): Settled => (settled = { status }),
    (error: unknown): Settled => (settled = { error }),
  );
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  const show = phasePrinter(options.live);
  let last: DeploymentStatus | undefined;
  let missed = 0;
  let lastBeat = '';
  while (!settled) {
    try {
      last = await handle.query(statusQuery);
      missed = 0;
      show(last);
      if (last.state === 'compensation-failed') return { kind: 'status', status: last };
      const beat = options.live ? (await heartbeats(handle)).join('\n    ') : '';
      if (beat && beat !== lastBeat) printLine(`    ${beat}`);
      lastBeat = beat;
    } catch (error) {
      // No worker has answered yet (a query waits for one), or Temporal itself is gone.
      if (notReached(error) && ++missed >= UNREACHABLE_POLLS)
        return { kind: 'unknown', why: `Temporal stopped answering: ${messageOf(error)}`, last };
    }
    if (Date.now() >= deadline) return { kind: 'still-running', last };
    // Cleared once the race is decided: a pending pause must not keep the CLI alive after the result is in. (Not
    // unreferenced: while Temporal is unreachable it may be all that keeps the process waiting.)
    const pause = new AbortController();
    await Promise.race([result, delay(POLL_MS, undefined, { signal: pause.signal })]);
    pause.abort();
  }
  const ending = await result;
  if ('status' in ending) {
    show(ending.status);
    return { kind: 'status', status: ending.status };
  }
  const how = endedByTemporal(ending.error);
  if (how) return { kind: 'ended-by-temporal', how, last };
  if (notReached(ending.error)) return { kind: 'unknown', why: messageOf(ending.error), last };
  throw ending.error;
}

function phasePrinter(live: boolean): (status: DeploymentStatus) => void {
  const shown = new Set<string>();
  let lastState = '';
  return (status) => {
    if (!live) return;
    if (status.state !== lastState) printLine(`[${status.state}]`);
    lastState = status.state;
    status.phases.forEach((phase, index) => {
      const key = `${index}:${phase.status}`;
      if (!shown.has(key)) printLine(`  ${phaseLine(phase)}`);
      shown.add(key);
    });
  };
}
