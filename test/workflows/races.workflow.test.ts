/**
 * Message races on the time-skipping server: two messages, or a message and a timer, in one workflow task.
 *
 * A race is made deterministic by stopping the worker while the workflow waits: the timer fires and the messages
 * arrive while no worker polls, so the server hands them all to the next worker in one workflow task. The workers
 * here keep no workflow cache, hence no sticky queue: that task waits on the task queue itself for the next worker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { isGrpcServiceError, type WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DeployRequest } from '../../domain/requests.js';
import { parseSpec, resolveEnvironment } from '../../domain/spec.js';
import { timeSkippingServerPath } from '../../stack/temporal.js';
import { workflowsPath } from '../../worker/bundle.js';
import { WORKER_TUNING } from '../../worker/index.js';
import type { deployWorkflow } from '../../workflows/index.js';
import {
  resolveCompensationUpdate,
  searchAttributes,
  statusQuery,
  voteSignal,
  voteUpdate,
} from '../../workflows/messages.js';
import { called, stubActivities } from '../support/stub-activities.js';
import { registerSearchAttributes, workflowBundle } from '../support/temporal.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const DEADLINE_MS = 24 * 3_600_000;
const GRPC_NOT_FOUND = 5;

let env: TestWorkflowEnvironment;
let sequence = 0;

function request(environment: 'staging' | 'production'): DeployRequest {
  const service = `race-${++sequence}`;
  const spec = parseSpec(
    {
      service,
      target: 'docker',
      image: { repository: '127.0.0.1:5000/web' },
      environments: {
        staging: { docker: { host: 'unix:///stub.sock', hostPort: 18080 } },
        production: {
          protected: true,
          deployers: ['ci-bot'],
          docker: { host: 'unix:///stub.sock', hostPort: 18081 },
          approval: { required: 1, approvers: ['alice', 'bob'], deadline: '24h' },
        },
      },
    },
    'deploy.yaml',
  );
  return { target: resolveEnvironment(spec, environment), version: '1.1.0', requestedBy: 'ci-bot' };
}

/**
 * The workflows with a workflow interceptor that runs every Signal handler one microtask late, as any async inbound
 * interceptor does (tracing interceptors are): a vote that arrives with the deadline is then counted only after the
 * deadline timer has resolved, so the gate's wait returns "timed out" although the vote is in.
 */
const LATE_SIGNAL_HANDLERS = [
  'export const interceptors = () => ({',
  '  inbound: [{ async handleSignal(input, next) { await Promise.resolve(); return next(input); } }],',
  '});',
].join('\n');
let lateSignalBundle: Promise<WorkflowBundleWithSourceMap> | undefined;
function lateSignalHandlersBundle(): Promise<WorkflowBundleWithSourceMap> {
  lateSignalBundle ??= bundleWorkflowCode({
    workflowsPath,
    workflowInterceptorModules: [`data:text/javascript,${encodeURIComponent(LATE_SIGNAL_HANDLERS)}`],
    logger: { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {} },
  });
  return lateSignalBundle;
}

/** Runs a worker on `taskQueue` until `work` settles; without a cache, so a stopped worker holds no task back. */
async function withWorker<T>(
  taskQueue: string,
  activities: Activities,
  work: () => Promise<T>,
  bundle?: WorkflowBundleWithSourceMap,
): Promise<T> {
  const worker = await Worker.create({
    ...WORKER_TUNING,
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: bundle ?? (await workflowBundle()),
    activities,
    maxCachedWorkflows: 0,
  });
  return worker.runUntil(work());
}

function start(taskQueue: string, deploy: DeployRequest) {
  return env.client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
    taskQueue,
    workflowId: `${deploy.target.service}.${deploy.target.environment}`,
    args: [deploy],
  });
}

/** Polls `probe` until it returns something, at most 200 times. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const found = await probe();
    if (found !== undefined) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} not reached`);
}

const waitForState = (handle: WorkflowHandle, state: DeploymentStatus['state']) =>
  waitFor(`state ${state}`, async () => {
    const status = await handle.query(statusQuery);
    return status.state === state ? status : undefined;
  });

async function eventsOf(handle: WorkflowHandle): Promise<HistoryEvent[]> {
  return (await handle.fetchHistory()).events ?? [];
}

function toMs(time: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  return Number(time?.seconds ?? 0) * 1_000 + Math.ceil((time?.nanos ?? 0) / 1e6);
}

const isTaskStarted = (e: HistoryEvent) => e.workflowTaskStartedEventAttributes != null;
const isTaskCompleted = (e: HistoryEvent) => e.workflowTaskCompletedEventAttributes != null;

/** Asserts that the events at `first` and `second` went to the workflow together, in one task that completed. */
function assertOneWorkflowTask(events: HistoryEvent[], first: number, second: number, what: string): void {
  assert.ok(first >= 0 && second > first, `${what}: both in history, in this order`);
  const between = events.slice(first + 1, second);
  assert.ok(!between.some((e) => isTaskStarted(e) || isTaskCompleted(e)), `${what}: no workflow task between them`);
  const next = events.findIndex((e, i) => i > second && isTaskStarted(e));
  assert.ok(next > second, `${what}: a workflow task started after both`);
  assert.ok(events[next + 1] && isTaskCompleted(events[next + 1] as HistoryEvent), `${what}: and it completed`);
}

/**
 * Waits until the server holds the Update. The time-skipping server does not support waiting for the ADMITTED stage,
 * so the Update is asked for by its id until the server knows it.
 */
function admitted(handle: WorkflowHandle, updateId: string): Promise<true> {
  return waitFor(`update ${updateId} on the server`, async () => {
    try {
      // Without a wait stage the server answers at once with the stage reached, or NOT_FOUND.
      await env.client.workflowService.pollWorkflowExecutionUpdate({
        namespace: env.client.options.namespace,
        updateRef: { workflowExecution: { workflowId: handle.workflowId }, updateId },
      });
      return true;
    } catch (error) {
      if (isGrpcServiceError(error) && Number(error.code) === GRPC_NOT_FOUND) return undefined;
      throw error;
    }
  });
}

/** Like one entry of `Promise.allSettled`, handled at once so that an early rejection is never unhandled. */
function settle<T>(promise: Promise<T>): Promise<PromiseSettledResult<T>> {
  return promise.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

/** An activity stub that does not return until the test lets it. */
function held<A extends unknown[], T>(value: (...args: A) => T) {
  let release: () => void = () => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  const activity = async (...args: A): Promise<T> => {
    await released;
    return value(...args);
  };
  return { release, activity };
}

describe('message races (time-skipping server)', { timeout: 600_000 }, () => {
  before(async () => {
    env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } },
    });
    await registerSearchAttributes(env.connection);
    await Promise.all([workflowBundle(), lateSignalHandlersBundle()]);
  });
  after(async () => env?.teardown());

  it(
    'approves a deploy whose last approval lands in the same workflow task as the approval deadline, whether its handler runs before or after the deadline timer resolves',
    { timeout: 120_000 },
    async () => {
      const variants = [
        ['handler before timer (as the SDK orders Signals)', await workflowBundle()],
        ['handler after timer (late Signal handlers)', await lateSignalHandlersBundle()],
      ] as const;
      for (const [variant, bundle] of variants) {
        const { activities, calls } = stubActivities();
        const taskQueue = `race-deadline-${sequence}-${Date.now()}`;
        const handle = await withWorker(
          taskQueue,
          activities,
          async () => {
            const handle = await start(taskQueue, request('production'));
            await waitForState(handle, 'awaiting-approval');
            return handle;
          },
          bundle,
        );
        // No worker polls now. Skip time exactly to the deadline timer: it fires, and its task waits for a worker.
        const timerStarted = (await eventsOf(handle)).find(
          (e) => toMs(e.timerStartedEventAttributes?.startToFireTimeout) === DEADLINE_MS,
        );
        const timerId = timerStarted?.timerStartedEventAttributes?.timerId;
        assert.ok(timerId, `${variant}: the gate waits on its 24 h deadline timer`);
        await env.sleep(toMs(timerStarted?.eventTime) + DEADLINE_MS - (await env.currentTimeMs()));
        const fired = await eventsOf(handle);
        assert.ok(
          fired.some((e) => e.timerFiredEventAttributes?.timerId === timerId),
          `${variant}: the deadline has fired`,
        );
        assert.ok(!isTaskStarted(fired.at(-1) as HistoryEvent), `${variant}: and no worker has seen it yet`);
        // The approving vote arrives a moment after the deadline, before any worker has handled the timer.
        await handle.signal(voteSignal, { approver: 'alice', decision: 'approve', comment: 'just in time' });
        const status = await withWorker(taskQueue, activities, () => handle.result(), bundle);

        const events = await eventsOf(handle);
        assertOneWorkflowTask(
          events,
          events.findIndex((e) => e.timerFiredEventAttributes?.timerId === timerId),
          events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === voteSignal.name),
          `${variant}: deadline timer and vote`,
        );
        assert.equal(status.state, 'succeeded', `${variant}: counted, not expired (${status.errors.join('; ')})`);
        const approval = status.phases.find((p) => p.name === 'approval');
        assert.equal(approval?.status, 'succeeded', variant);
        assert.equal(approval?.detail, 'approved by alice', variant);
        assert.deepEqual(
          status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
          ['alice:approve:signal'],
          variant,
        );
        assert.equal(called(calls, 'applyRelease'), 1, `${variant}: the release was applied`);
        await Worker.runReplayHistory({ workflowBundle: bundle }, await handle.fetchHistory());
      }
    },
  );

  it(
    'accepts exactly one of two resolve Updates handled in one workflow task and refuses the other as already resolved',
    { timeout: 60_000 },
    async () => {
      let restoreWorks = false;
      const { activities, calls } = stubActivities({
        awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
        restoreRelease: ({ to }) =>
          restoreWorks
            ? Promise.resolve(to)
            : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
      });
      const taskQueue = `race-resolve-${sequence}-${Date.now()}`;
      const handle = await withWorker(taskQueue, activities, async () => {
        const handle = await start(taskQueue, request('staging'));
        await waitForState(handle, 'compensation-failed');
        return handle;
      });
      restoreWorks = true;
      // No worker polls now: both Updates wait on the server for the next workflow task, in the order they came.
      const retry = settle(
        handle.executeUpdate(resolveCompensationUpdate, {
          updateId: 'retry-by-alice',
          args: [{ action: 'retry', operator: 'alice', reason: 'engine back' }],
        }),
      );
      await admitted(handle, 'retry-by-alice');
      const abandon = settle(
        handle.executeUpdate(resolveCompensationUpdate, {
          updateId: 'abandon-by-bob',
          args: [{ action: 'abandon', operator: 'bob', reason: 'fixed by hand' }],
        }),
      );
      await admitted(handle, 'abandon-by-bob');
      const [first, second] = await withWorker(taskQueue, activities, () => Promise.all([retry, abandon]));

      assert.deepEqual(first, { status: 'fulfilled', value: 'retry accepted from alice' });
      assert.equal(second.status, 'rejected');
      const refusal = second.status === 'rejected' ? (second.reason as unknown) : undefined;
      assert.ok(refusal instanceof WorkflowUpdateFailedError, 'refused by the validator');
      assert.match(refusal.cause?.message ?? '', /already resolved: retry by alice/);

      const status = await withWorker(taskQueue, activities, () => handle.result());
      assert.equal(status.state, 'rolled-back', 'the accepted retry restored the rollback point');
      assert.deepEqual(
        status.rollback?.operatorDecisions.map((d) => `${d.action}:${d.operator}`),
        ['retry:alice'],
      );
      assert.equal(status.rollback?.attempts, 2);
      assert.equal(called(calls, 'restoreRelease'), 2);
      const events = await eventsOf(handle);
      const accepted = events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes);
      assert.deepEqual(
        accepted.map((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId),
        ['retry-by-alice'],
        'only the accepted Update is in history',
      );
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, await handle.fetchHistory());
    },
  );

  it(
    'closes the approval gate when its wait is cancelled: a later vote is refused, not counted',
    { timeout: 60_000 },
    async () => {
      const report = held((status: DeploymentStatus) => `reports/${status.deploymentId}.md`);
      const { activities, calls } = stubActivities({ publishReport: report.activity });
      const taskQueue = `race-cancel-vote-${sequence}-${Date.now()}`;
      const status = await withWorker(taskQueue, activities, async () => {
        const handle = await start(taskQueue, request('production'));
        await waitForState(handle, 'awaiting-approval');
        await handle.cancel();
        // The workflow stays open while its report is being written: long enough to be sent votes.
        try {
          await waitFor('the report', () => Promise.resolve(called(calls, 'publishReport') === 1 || undefined));
          const reporting = await handle.query(statusQuery);
          assert.notEqual(reporting.state, 'awaiting-approval');
          assert.notEqual(
            (await handle.describe()).typedSearchAttributes.get(searchAttributes.status),
            'awaiting-approval',
            'nor does its search attribute',
          );
          await assert.rejects(
            handle.executeUpdate(voteUpdate, { args: [{ approver: 'alice', decision: 'approve' }] }),
            (error: unknown) => {
              assert.ok(error instanceof WorkflowUpdateFailedError);
              assert.match(error.cause?.message ?? '', /not awaiting approval/);
              return true;
            },
          );
          await handle.signal(voteSignal, { approver: 'bob', decision: 'approve' });
        } finally {
          report.release();
        }
        return handle.result();
      });
      assert.notEqual(status.state, 'awaiting-approval');
      assert.equal(status.phases.find((p) => p.name === 'approval')?.status, 'failed');
      assert.deepEqual(status.approval?.votes, [], 'no vote was counted after the cancel');
      assert.deepEqual(
        status.approval?.refused.map((r) => `${r.approver}:${r.via}`),
        ['bob:signal'],
        'the late Signal is kept as refused',
      );
      assert.match(status.approval?.refused[0]?.reason ?? '', /not awaiting approval/);
      assert.equal(called(calls, 'applyRelease'), 0);
    },
  );

  it(
    'writes the report of a deploy cancelled at approval and completes with its status',
    { timeout: 60_000 },
    async () => {
      const { activities, calls } = stubActivities();
      const taskQueue = `race-cancel-report-${sequence}-${Date.now()}`;
      const { status, execution } = await withWorker(taskQueue, activities, async () => {
        const handle = await start(taskQueue, request('production'));
        await waitForState(handle, 'awaiting-approval');
        await handle.cancel();
        const status = await handle.result();
        return { status, execution: (await handle.describe()).status.name };
      });
      assert.equal(execution, 'COMPLETED', 'the workflow returns its status instead of ending as cancelled');
      assert.equal(status.state, 'failed');
      assert.match(status.errors.join('\n'), /approval: .*cancel/i);
      assert.equal(called(calls, 'publishReport'), 1, 'the report activity ran despite the cancel');
      assert.equal(
        (calls.find((c) => c.name === 'publishReport')?.args[0] as DeploymentStatus).state,
        'failed',
        'and reported how the deploy ended',
      );
      assert.equal(status.reportPath, `reports/${status.deploymentId}.md`);
      assert.equal(status.phases.find((p) => p.name === 'report')?.status, 'succeeded');
      assert.equal(called(calls, 'applyRelease'), 0);
    },
  );
});
