import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure, RetryState } from '@temporalio/common';
import { deploymentStates } from '../../domain/deployment.js';
import {
  CliFailure,
  EXIT_CODES,
  InvalidInput,
  NON_RETRYABLE_TYPES,
  TemporalUnreachable,
  applicationFailureIn,
  fail,
  failureKindOf,
  failureKinds,
  isConnectionError,
  isFailureOf,
  stateForFailure,
  unreachable,
  type FailureKindName,
} from '../../domain/failures.js';

const kinds = Object.keys(failureKinds) as FailureKindName[];

/** How an activity's failure reaches a workflow: an ActivityFailure whose cause is the failure raised. */
const fromActivity = (cause: Error) =>
  new ActivityFailure('activity failed', 'applyRelease', '7', RetryState.NON_RETRYABLE_FAILURE, undefined, cause);

describe('failure vocabulary', () => {
  it('raises each kind as an ApplicationFailure of its type, non-retryable unless the table says otherwise', () => {
    for (const kind of kinds) {
      const failure = fail(kind, `a ${kind} failure`);
      assert.ok(failure instanceof ApplicationFailure);
      assert.equal(failure.type, failureKinds[kind].type);
      assert.equal(failure.message, `a ${kind} failure`);
      assert.equal(failure.nonRetryable, !failureKinds[kind].retryable, kind);
      assert.deepEqual(failure.details, []);
    }
    assert.equal(fail('unreachable', 'x').nonRetryable, false);
    assert.equal(fail('unhealthy', 'x').nonRetryable, true);
  });

  it('carries details with the failure', () => {
    const report = { consistent: false, checks: [] };
    assert.deepEqual(fail('inconsistent', 'differs', report, 'second').details, [report, 'second']);
  });

  it('gives every kind its own type', () => {
    assert.equal(new Set(kinds.map((k) => failureKinds[k].type)).size, kinds.length);
  });

  it('lists the types Temporal must not retry: all but the retryable ones', () => {
    assert.deepEqual(
      [...NON_RETRYABLE_TYPES].sort(),
      kinds
        .filter((k) => !failureKinds[k].retryable)
        .map((k) => failureKinds[k].type)
        .sort(),
    );
    assert.ok(NON_RETRYABLE_TYPES.includes('InvalidRelease'));
    assert.ok(NON_RETRYABLE_TYPES.includes('Unhealthy'));
    assert.equal(NON_RETRYABLE_TYPES.includes('TargetUnreachable'), false);
  });

  it('makes an unreachable target a retryable failure naming what and why', () => {
    const failure = unreachable('the API server', new Error('connect ECONNREFUSED 127.0.0.1:6443'));
    assert.equal(failure.type, 'TargetUnreachable');
    assert.equal(failure.nonRetryable, false);
    assert.equal(failure.message, 'the API server is unreachable: connect ECONNREFUSED 127.0.0.1:6443');
    assert.equal(unreachable('the registry', 'timeout').message, 'the registry is unreachable: timeout');
  });
});

describe('reading failures back', () => {
  it('finds the kind of a failure raised directly', () => {
    for (const kind of kinds) assert.equal(failureKindOf(fail(kind, 'x')), kind);
  });

  it('finds the kind through activity, child-workflow and plain error wrappers', () => {
    const inner = fail('unhealthy', 'not healthy within 1m');
    const child = new ChildWorkflowFailure(
      'default',
      { workflowId: 'w', runId: 'r' },
      'deploy',
      RetryState.NON_RETRYABLE_FAILURE,
      fromActivity(inner),
    );
    const wrapped = new Error('deploy failed', { cause: child });
    assert.equal(applicationFailureIn(wrapped), inner);
    assert.equal(failureKindOf(wrapped), 'unhealthy');
    assert.equal(isFailureOf(wrapped, 'unhealthy'), true);
    assert.equal(isFailureOf(wrapped, 'invalid'), false);
  });

  it('finds no kind in errors outside the vocabulary', () => {
    assert.equal(failureKindOf(new Error('boom')), undefined);
    assert.equal(failureKindOf(fromActivity(new Error('boom'))), undefined);
    assert.equal(failureKindOf(ApplicationFailure.create({ type: 'SomethingElse', message: 'x' })), undefined);
    assert.equal(failureKindOf(ApplicationFailure.create({ message: 'no type' })), undefined);
    assert.equal(failureKindOf('a string'), undefined);
    assert.equal(failureKindOf(undefined), undefined);
    assert.equal(applicationFailureIn(new Error('outer', { cause: 'not an error' })), undefined);
  });

  it('stops at the outermost ApplicationFailure', () => {
    const outer = ApplicationFailure.create({ type: 'Forbidden', message: 'no', cause: fail('invalid', 'bad') });
    assert.equal(failureKindOf(outer), 'forbidden');
  });

  it('ends a deployment in the state of its failure kind, and in failed for anything else', () => {
    assert.equal(stateForFailure(fail('invalid', 'x')), 'invalid');
    assert.equal(stateForFailure(fail('forbidden', 'x')), 'invalid');
    assert.equal(stateForFailure(fromActivity(fail('unreachable', 'x'))), 'unreachable');
    assert.equal(stateForFailure(fail('rejected', 'x')), 'rejected');
    assert.equal(stateForFailure(fail('expired', 'x')), 'expired');
    assert.equal(stateForFailure(fail('unhealthy', 'x')), 'failed');
    assert.equal(stateForFailure(fail('budget', 'x')), 'failed');
    assert.equal(stateForFailure(new Error('boom')), 'failed');
    assert.equal(stateForFailure(ApplicationFailure.create({ type: 'Unknown', message: 'x' })), 'failed');
    for (const kind of kinds) assert.ok(deploymentStates.includes(stateForFailure(fail(kind, 'x'))), kind);
  });

  it('tells socket-level connection errors from other errors', () => {
    const withCode = (code: unknown) => Object.assign(new Error('x'), { code });
    for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'ERR_SOCKET_CONNECTION_TIMEOUT'])
      assert.equal(isConnectionError(withCode(code)), true, code);
    assert.equal(isConnectionError(withCode('EACCES')), false);
    assert.equal(isConnectionError(withCode(111)), false);
    assert.equal(isConnectionError(new Error('ECONNREFUSED')), false);
    assert.equal(isConnectionError(undefined), false);
  });
});

describe('exit codes', () => {
  it('has an integer exit code for every deployment state and for nothing else', () => {
    assert.deepEqual(Object.keys(EXIT_CODES).sort(), [...deploymentStates].sort());
    for (const state of deploymentStates) assert.ok(Number.isInteger(EXIT_CODES[state]), state);
  });

  it('exits 0 only for success', () => {
    assert.deepEqual(
      deploymentStates.filter((s) => EXIT_CODES[s] === 0),
      ['succeeded'],
    );
  });

  it('gives the CLI refusals the codes of their states', () => {
    const invalid = new InvalidInput('bad spec');
    assert.ok(invalid instanceof CliFailure);
    assert.equal(invalid.exitCode, EXIT_CODES.invalid);
    assert.equal(invalid.name, 'InvalidInput');
    const down = new TemporalUnreachable('127.0.0.1:7233', new Error('connect ECONNREFUSED'));
    assert.equal(down.exitCode, EXIT_CODES.unreachable);
    assert.equal(down.message, 'Temporal at 127.0.0.1:7233 is unreachable: connect ECONNREFUSED');
    assert.equal(down.name, 'TemporalUnreachable');
  });
});
