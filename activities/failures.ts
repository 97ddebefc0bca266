import { ApplicationFailure } from '@temporalio/activity';
import { FailureType } from '../domain/deployment.js';

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EHOSTUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN']);

/** Retryable: the workflow's retry policy decides how long a target may stay unreachable. */
export function unreachable(what: string, cause: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    type: FailureType.unreachable,
    message: `${what} is unreachable: ${messageOf(cause)}`,
  });
}

export function invalid(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: FailureType.invalid, message, nonRetryable: true });
}

export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && UNREACHABLE_CODES.has(code);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
