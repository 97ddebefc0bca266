/**
 * The one failure vocabulary. Every way a deploy or rollback can fail has a kind here: the ApplicationFailure type
 * activities and workflows raise, whether Temporal may retry it, the deployment state it ends in and the CLI's exit
 * code for it. Activities and workflows create failures only through `fail`; the workflow reads them back with
 * `failureKindOf`; the CLI maps its own refusals (`InvalidInput`, `TemporalUnreachable`) the same way.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { DeploymentState } from './deployment.js';

interface FailureKind {
  /** The ApplicationFailure type: stable, it is stored in workflow histories. */
  type: string;
  retryable: boolean;
  /** How a deployment that fails this way before touching the target ends. */
  state: DeploymentState;
  meaning: string;
}

export const failureKinds = {
  invalid: {
    type: 'InvalidRelease',
    retryable: false,
    state: 'invalid',
    meaning: 'the release or the request cannot work: fixing it is the requester’s job',
  },
  forbidden: {
    type: 'Forbidden',
    retryable: false,
    state: 'invalid',
    meaning: 'the requester may not do this in that environment',
  },
  unreachable: {
    type: 'TargetUnreachable',
    retryable: true,
    state: 'unreachable',
    meaning: 'the target (engine, API server, registry) did not answer; retried within the phase budget',
  },
  budget: {
    type: 'BudgetExceeded',
    retryable: false,
    state: 'failed',
    meaning: 'a phase ran out of its time budget',
  },
  unhealthy: {
    type: 'Unhealthy',
    retryable: false,
    state: 'failed',
    meaning: 'the release did not become healthy or ready in time',
  },
  inconsistent: {
    type: 'Inconsistent',
    retryable: false,
    // Raised by a restore's verification: compensation then waits for an operator in compensation-failed.
    state: 'failed',
    meaning: 'the live state does not equal the rollback point after a restore',
  },
  superseded: {
    type: 'Superseded',
    retryable: false,
    state: 'failed',
    meaning: 'a later attempt or a restore took the target over; this attempt stopped without changing it',
  },
  contentChanged: {
    type: 'ContentChanged',
    retryable: false,
    // Raised by apply before it changes anything: the deployment ends invalid once the rollback point is proven intact.
    state: 'invalid',
    meaning: 'the release’s content changed after it was validated and approved; none of it was applied',
  },
  rejected: {
    type: 'Rejected',
    retryable: false,
    state: 'rejected',
    meaning: 'an approver rejected the deployment',
  },
  expired: {
    type: 'Expired',
    retryable: false,
    state: 'expired',
    meaning: 'the approval deadline passed',
  },
} as const satisfies Record<string, FailureKind>;

export type FailureKindName = keyof typeof failureKinds;

/** The CLI's exit codes: the contract with CI. */
export const EXIT = {
  succeeded: 0,
  failed: 1,
  invalid: 2,
  rejected: 3,
  unreachable: 4,
  /** Compensation failed, was abandoned, or Temporal ended the run (terminated, timed out): someone must look. */
  operatorNeeded: 5,
  /** `--timeout` ran out, or `status` of a deployment that is still under way. */
  stillRunning: 6,
  /** Temporal stopped answering while the CLI waited: the deployment may still be running. */
  outcomeUnknown: 7,
} as const;

/** The exit code of each state a deployment can show. */
export const EXIT_CODES: Record<DeploymentState, number> = {
  succeeded: EXIT.succeeded,
  'rolled-back': EXIT.failed,
  failed: EXIT.failed,
  invalid: EXIT.invalid,
  rejected: EXIT.rejected,
  expired: EXIT.rejected,
  unreachable: EXIT.unreachable,
  'compensation-failed': EXIT.operatorNeeded,
  abandoned: EXIT.operatorNeeded,
  running: EXIT.stillRunning,
  'awaiting-approval': EXIT.stillRunning,
  compensating: EXIT.stillRunning,
};

/** Failure types Temporal must not retry, for activity retry policies. */
export const NON_RETRYABLE_TYPES: string[] = Object.values(failureKinds)
  .filter((kind) => !kind.retryable)
  .map((kind) => kind.type);

/** The one way to raise a failure of the vocabulary; `details` travel with it (a consistency report, say). */
export function fail(kind: FailureKindName, message: string, ...details: unknown[]): ApplicationFailure {
  const { type, retryable } = failureKinds[kind];
  return ApplicationFailure.create({ type, message, nonRetryable: !retryable, details });
}

/** A target that did not answer: retryable, the phase's budget bounds how long. */
export function unreachable(what: string, cause: unknown): ApplicationFailure {
  return fail('unreachable', `${what} is unreachable: ${messageOf(cause)}`);
}

/** The ApplicationFailure inside an error, looking through activity and child-workflow wrappers. */
export function applicationFailureIn(error: unknown): ApplicationFailure | undefined {
  let current: unknown = error;
  while (current instanceof Error) {
    if (current instanceof ApplicationFailure) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

export function failureKindOf(error: unknown): FailureKindName | undefined {
  const type = applicationFailureIn(error)?.type;
  if (!type) return undefined;
  return (Object.keys(failureKinds) as FailureKindName[]).find((name) => failureKinds[name].type === type);
}

export function isFailureOf(error: unknown, kind: FailureKindName): boolean {
  return failureKindOf(error) === kind;
}

/** How a failure before the target was touched ends the deployment; anything unknown is a plain failure. */
export function stateForFailure(error: unknown): DeploymentState {
  const kind = failureKindOf(error);
  return kind ? failureKinds[kind].state : 'failed';
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ENOENT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EPIPE',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);

/** A socket-level failure to reach a peer (Node's error codes), as opposed to an answer that says no. */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && CONNECTION_CODES.has(code);
}

/** Refusals the CLI itself makes, before or instead of a workflow: each carries its exit code. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad arguments, a bad spec, a refused vote, a busy environment: nothing was changed (exit 2). */
export class InvalidInput extends CliFailure {
  constructor(message: string) {
    super(message, EXIT.invalid);
  }
}

/** Temporal did not answer the CLI: nothing was started or changed by this call (exit 4). */
export class TemporalUnreachable extends CliFailure {
  constructor(address: string, cause: unknown) {
    super(`Temporal at ${address} is unreachable: ${messageOf(cause)}`, EXIT.unreachable);
  }
}
