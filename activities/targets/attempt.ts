/**
 * One attempt of an activity that changes a target, and how it stops in time. A cancelled or timed-out attempt may
 * still be running on some worker: it learns of the cancellation through its heartbeats (`checkpoint`), and the fence
 * on the target stops it even when that news comes too late. Every attempt takes the fence when it starts and checks
 * it before each change; a later activity of the same deployment (restore after apply) or a later attempt of the
 * same activity takes it over, and the earlier one stops without changing anything more.
 */
import { CancelledFailure, Context } from '@temporalio/activity';
import { deploymentIdOf } from '../../domain/deployment.js';
import { fail } from '../../domain/failures.js';

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    // Called outside an activity: a tool or a test driving the target directly.
    return undefined;
  }
}

/** Reports liveness, and stops right here when the attempt was cancelled, timed out or its worker is shutting down. */
export function checkpoint(details?: unknown): void {
  const context = currentContext();
  if (!context) return;
  context.heartbeat(details);
  const signal = context.cancellationSignal;
  if (signal.aborted)
    throw signal.reason instanceof Error ? signal.reason : new CancelledFailure(String(signal.reason ?? 'cancelled'));
}

/** Aborts the calls it is passed to when the attempt is cancelled. */
export function cancellationSignal(): AbortSignal | undefined {
  return currentContext()?.cancellationSignal;
}

/** Which attempt of which deployment holds the right to change a target. */
export interface FenceToken {
  deploymentId: string;
  /** The activity's position in its workflow (Temporal numbers activities in the order they are scheduled). */
  sequence: number;
  attempt: number;
}

/**
 * The token of the running attempt: the deployment is the workflow run that scheduled it. Outside an activity, a
 * token of its own that supersedes every earlier one.
 */
export function attemptToken(): FenceToken {
  const info = currentContext()?.info;
  const sequence = Number(info?.activityId);
  const execution = info?.workflowExecution;
  if (!info || !execution || !Number.isSafeInteger(sequence))
    return { deploymentId: `direct.${process.pid}.${Date.now()}`, sequence: Date.now(), attempt: 1 };
  return { deploymentId: deploymentIdOf(execution.workflowId, execution.runId), sequence, attempt: info.attempt };
}

/**
 * Whether `next` may take the fence from `held`. Another deployment always may: deployments of one target run one
 * at a time, so its attempts started after every attempt of the earlier one. Within a deployment, the activity
 * scheduled later wins, then the later attempt.
 */
function supersedes(next: FenceToken, held: FenceToken): boolean {
  if (next.deploymentId !== held.deploymentId) return true;
  return next.sequence > held.sequence || (next.sequence === held.sequence && next.attempt >= held.attempt);
}

const sameToken = (a: FenceToken, b: FenceToken): boolean =>
  a.deploymentId === b.deploymentId && a.sequence === b.sequence && a.attempt === b.attempt;

function decodeToken(text: string | undefined): FenceToken | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text) as Partial<FenceToken>;
    if (
      typeof value.deploymentId === 'string' &&
      typeof value.sequence === 'number' &&
      typeof value.attempt === 'number'
    )
      return { deploymentId: value.deploymentId, sequence: value.sequence, attempt: value.attempt };
  } catch {
    // not ours: treated as no holder
  }
  return undefined;
}

function superseded(where: string, holder: FenceToken | undefined): Error {
  const by = holder ? `${holder.deploymentId} (activity ${holder.sequence}, attempt ${holder.attempt})` : 'nobody';
  return fail('superseded', `${where}: the fence is held by ${by}; this attempt stops without changing anything`);
}

/** The fence of one target. */
export interface Fence {
  /** Takes the fence for this attempt, unless a later one already holds it. */
  take(): Promise<void>;
  /** Throws unless this attempt still holds the fence; call it before every change. */
  check(): Promise<void>;
}

/** Where a target keeps its fence, as each driver stores it: the holder's token as text. */
export interface FenceStore {
  /** The target, for messages. */
  where: string;
  /** The stored token; undefined when there is none. */
  read(): Promise<string | undefined>;
  /** Stores a token. A writer racing it may win: the next read says who did. */
  write(token: string): Promise<void>;
}

const TAKE_ATTEMPTS = 5;

/** The fence kept in a store: taken by writing this attempt's token and reading back who won, checked by reading. */
export function fenceOn(store: FenceStore, token: FenceToken): Fence {
  const holder = async () => decodeToken(await store.read());
  return {
    async take() {
      for (let written = 0; ; written++) {
        const held = await holder();
        if (held && sameToken(held, token)) return;
        if ((held && !supersedes(token, held)) || written === TAKE_ATTEMPTS) throw superseded(store.where, held);
        await store.write(JSON.stringify(token));
      }
    },
    async check() {
      const held = await holder();
      if (!held || !sameToken(held, token)) throw superseded(store.where, held);
    },
  };
}

/** Before each change: heartbeat (and stop if cancelled), then make sure no later attempt took over. */
export async function beforeChange(fence: Fence, what: string): Promise<void> {
  checkpoint(what);
  await fence.check();
}
