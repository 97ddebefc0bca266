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
import { type Client, isGrpcServiceError, type WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import { type DeploymentStatus, lockId } from '../../domain/deployment.js';
import type { Credential } from '../../domain/identity.js';
import type { DeployRequest } from '../../domain/requests.js';
import { workflowsPath } from '../../worker/bundle.js';
import { payloadConverterPath } from '../../codec/data-converter.js';
import type { deployWorkflow } from '../../workflows/index.js';
import {
  resolveCompensationUpdate,
  searchAttributes,
  statusQuery,
  voteSignal,
  voteUpdate,
} from '../../workflows/messages.js';
import { called, stubActivities, stubLoadPolicy, TEST_CONTENT_HASH, testPolicy } from '../support/stub-activities.js';
import { runTestWorker, startTimeSkippingServer, testDataConverter, workflowBundle } from '../support/temporal.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const DEADLINE_MS = 24 * 3_600_000;
const GRPC_NOT_FOUND = 5;

let env: TestWorkflowEnvironment;
let client: Client;
let sequence = 0;

/** Races are about timing, not identity: names stand for who sends a message. */
const dev = (user: string): Credential => ({ kind: 'insecure-dev', user });

/** A deploy of a service of its own (its own lock), with stubs whose policy publishes that service's ports. */
function setup(environment: 'staging' | 'production', overrides: Partial<Activities> = {}) {
  const service = `race-${++sequence}`;
  const deploy: DeployRequest = {
    spec: { service, target: 'docker', image: { repository: '127.0.0.1:5000/web' } },
    environment,
    version: '1.1.0',
    credential: dev('ci-bot'),
  };
  const stubs = stubActivities({ loadPolicy: stubLoadPolicy(testPolicy({}, [service])), ...overrides });
  return { ...stubs, deploy, workflowId: lockId(service, environment) };
}

/**
 * The workflows with a workflow interceptor that runs every Signal and Update handler one microtask late, as any
 * async inbound interceptor does (tracing interceptors are): a vote that arrives with the deadline then reaches the
 * gate only after the deadline timer has resolved.
 */
const LATE_HANDLERS = [
  'export const interceptors = () => ({',
  '  inbound: [{',
  '    async handleSignal(input, next) { await Promise.resolve(); return next(input); },',
  '    async handleUpdate(input, next) { await Promise.resolve(); return next(input); },',
  '  }],',
  '});',
].join('\n');
let lateBundle: Promise<WorkflowBundleWithSourceMap> | undefined;
function lateHandlersBundle(): Promise<WorkflowBundleWithSourceMap> {
  lateBundle ??= bundleWorkflowCode({
    workflowsPath,
    payloadConverterPath,
    workflowInterceptorModules: [`data:text/javascript,${encodeURIComponent(LATE_HANDLERS)}`],
    logger: { log() {}, info() {}, warn() {}, error() {}, debug() {}, trace() {} },
  });
  return lateBundle;
}

/** Runs a worker on `taskQueue` until `work` settles; without a cache, so a stopped worker holds no task back. */
function withWorker<T>(
  taskQueue: string,
  activities: Activities,
  work: () => Promise<T>,
  bundle?: WorkflowBundleWithSourceMap,
): Promise<T> {
  return runTestWorker(
    { connection: env.nativeConnection, taskQueue, activities, bundle, maxCachedWorkflows: 0 },
    work,
  );
}

function start(taskQueue: string, { deploy, workflowId }: { deploy: DeployRequest; workflowId: string }) {
  return client.workflow.start<typeof deployWorkflow>('deployWorkflow', { taskQueue, workflowId, args: [deploy] });
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
 * Asserts that the Update accepted at `accepted` went to the workflow with the timer fired at `fired`: an Update is
 * written to history only once a workflow task accepted it, so exactly one task ran between them, and it completed.
 */
function assertHandledWithTimer(events: HistoryEvent[], fired: number, accepted: number, what: string): void {
  assert.ok(fired >= 0 && accepted > fired, `${what}: both in history, in this order`);
  const between = events.slice(fired + 1, accepted);
  const started = between.findIndex(isTaskStarted);
  assert.ok(started >= 0, `${what}: a workflow task started after the timer fired`);
  assert.equal(between.filter(isTaskStarted).length, 1, `${what}: no workflow task between them`);
  assert.ok(between[started + 1] && isTaskCompleted(between[started + 1] as HistoryEvent), `${what}: it completed`);
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Waits until the server holds the Update. The time-skipping server does not support waiting for the ADMITTED stage,
 * so the Update is asked for by its id until the server knows it.
 */
function admitted(handle: WorkflowHandle, updateId: string): Promise<true> {
  return waitFor(`update ${updateId} on the server`, async () => {
    try {
      // Without a wait stage the server answers at once with the stage reached, or NOT_FOUND.
      await client.workflowService.pollWorkflowExecutionUpdate({
        namespace: client.options.namespace,
        updateRef: { workflowExecution: { workflowId: handle.workflowId }, updateId },
      });
      return true;
    } catch (error) {
      if (isGrpcServiceError(error) && Number(error.code) === GRPC_NOT_FOUND) return undefined;
      throw error;
    }
  });
}

/** Replays a run's history under its own workflow id, which admission compares with the lock of the request. */
async function replay(handle: WorkflowHandle, bundle: WorkflowBundleWithSourceMap): Promise<void> {
  await Worker.runReplayHistory(
    { workflowBundle: bundle, dataConverter: testDataConverter() },
    await handle.fetchHistory(),
    handle.workflowId,
  );
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
    ({ env, client } = await startTimeSkippingServer());
    await lateHandlersBundle();
  });
  after(async () => env?.teardown());

  /**
   * Runs a production deploy to its approval gate, stops the worker, skips time exactly to the 24 h deadline so that
   * its timer fires with no worker to see it, lets `send` deliver a vote, then runs a worker until the deploy ends.
   */
  async function voteAtTheDeadline(
    variant: string,
    bundle: WorkflowBundleWithSourceMap,
    send: (handle: WorkflowHandle) => Promise<void>,
  ) {
    const test = setup('production');
    const taskQueue = `race-deadline-${sequence}-${Date.now()}`;
    const handle = await withWorker(
      taskQueue,
      test.activities,
      async () => {
        const handle = await start(taskQueue, test);
        await waitForState(handle, 'awaiting-approval');
        return handle;
      },
      bundle,
    );
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
    // The vote arrives a moment after the deadline, before any worker has handled the timer.
    await send(handle);
    const status = await withWorker(taskQueue, test.activities, () => handle.result(), bundle);
    const events = await eventsOf(handle);
    await replay(handle, bundle);
    return {
      status,
      events,
      calls: test.calls,
      firedAt: events.findIndex((e) => e.timerFiredEventAttributes?.timerId === timerId),
    };
  }

  const handlerOrders = async () =>
    [
      ['handler before timer (as the SDK orders messages)', await workflowBundle()],
      ['handler after timer (late handlers)', await lateHandlersBundle()],
    ] as const;

  it(
    'refuses a Signal vote that lands in the same workflow task as the approval deadline, whether its handler runs before or after the deadline timer resolves',
    { timeout: 120_000 },
    async () => {
      for (const [variant, bundle] of await handlerOrders()) {
        const { status, events, calls, firedAt } = await voteAtTheDeadline(variant, bundle, (handle) =>
          handle.signal(voteSignal, { approver: 'alice', decision: 'approve', comment: 'just in time' }),
        );
        assertOneWorkflowTask(
          events,
          firedAt,
          events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === voteSignal.name),
          `${variant}: deadline timer and vote`,
        );
        assert.equal(status.state, 'expired', variant);
        assert.deepEqual(status.approval?.votes, [], `${variant}: a Signal never counts`);
        assert.deepEqual(
          status.approval?.refused.map((r) => `${r.approver}:${r.via}`),
          ['alice:signal'],
          variant,
        );
        assert.equal(called(calls, 'applyRelease'), 0, `${variant}: the target was not touched`);
        assert.ok(!events.some((e) => e.workflowTaskFailedEventAttributes), `${variant}: no workflow task failed`);
      }
    },
  );

  it(
    'approves a deploy whose last approval Update lands in the same workflow task as the approval deadline, whether its handler runs before or after the deadline timer resolves',
    {
      timeout: 120_000,
    },
    async () => {
      for (const [variant, bundle] of await handlerOrders()) {
        let vote: Promise<PromiseSettledResult<unknown>> | undefined;
        const { status, events, calls, firedAt } = await voteAtTheDeadline(variant, bundle, async (handle) => {
          vote = settle(
            handle.executeUpdate(voteUpdate, {
              updateId: 'vote-at-deadline',
              args: [
                {
                  decision: 'approve',
                  contentHash: TEST_CONTENT_HASH,
                  comment: 'just in time',
                  credential: dev('alice'),
                },
              ],
            }),
          );
          await admitted(handle, 'vote-at-deadline');
        });
        assertHandledWithTimer(
          events,
          firedAt,
          events.findIndex(
            (e) =>
              e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId === 'vote-at-deadline',
          ),
          `${variant}: deadline timer and vote`,
        );
        assert.equal((await vote)?.status, 'fulfilled', `${variant}: the voter is answered`);
        assert.equal(status.state, 'succeeded', `${variant}: counted, not expired (${status.errors.join('; ')})`);
        const approval = status.phases.find((p) => p.name === 'approval');
        assert.equal(approval?.status, 'succeeded', variant);
        assert.equal(approval?.detail, 'approved by alice', variant);
        assert.deepEqual(
          status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
          ['alice:approve:update'],
          variant,
        );
        assert.equal(called(calls, 'applyRelease'), 1, `${variant}: the release was applied`);
        assert.ok(!events.some((e) => e.workflowTaskFailedEventAttributes), `${variant}: no workflow task failed`);
      }
    },
  );

  /**
   * Brings a deploy to compensation-failed, stops the worker, then has the server hold a retry by alice and, after
   * it, an abandon by bob, so that the next worker gets both in one workflow task.
   */
  async function twoResolvesInOneTask() {
    let restoreWorks = false;
    const test = setup('staging', {
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
      restoreRelease: ({ to }) =>
        restoreWorks
          ? Promise.resolve(to)
          : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
    });
    const { activities, calls } = test;
    const taskQueue = `race-resolve-${sequence}-${Date.now()}`;
    const handle = await withWorker(taskQueue, activities, async () => {
      const handle = await start(taskQueue, test);
      await waitForState(handle, 'compensation-failed');
      return handle;
    });
    restoreWorks = true;
    const retry = settle(
      handle.executeUpdate(resolveCompensationUpdate, {
        updateId: 'retry-by-alice',
        args: [{ action: 'retry', reason: 'engine back', credential: dev('alice') }],
      }),
    );
    await admitted(handle, 'retry-by-alice');
    const abandon = settle(
      handle.executeUpdate(resolveCompensationUpdate, {
        updateId: 'abandon-by-bob',
        args: [{ action: 'abandon', reason: 'fixed by hand', credential: dev('bob') }],
      }),
    );
    await admitted(handle, 'abandon-by-bob');
    const { first, second, status } = await withWorker(taskQueue, activities, async () => {
      const [first, second] = await Promise.all([retry, abandon]);
      return { first, second, status: await handle.result() };
    });
    const events = await eventsOf(handle);
    assert.ok(!events.some((e) => e.workflowTaskFailedEventAttributes), 'no workflow task failed');
    await replay(handle, await workflowBundle());
    return { first, second, status, events, calls };
  }

  it(
    'accepts exactly one of two resolve Updates handled in one workflow task and refuses the other as already resolved',
    { timeout: 60_000 },
    async () => {
      const { first, second, status, events, calls } = await twoResolvesInOneTask();
      const answers = [
        { id: 'retry-by-alice', action: 'retry', operator: 'alice (unverified, insecure dev mode)', answer: first },
        { id: 'abandon-by-bob', action: 'abandon', operator: 'bob (unverified, insecure dev mode)', answer: second },
      ];
      const accepted = answers.filter((a) => a.answer.status === 'fulfilled');
      assert.equal(accepted.length, 1, 'exactly one is accepted');
      const [winner, loser] = accepted[0] === answers[0] ? answers : [answers[1]!, answers[0]!];
      assert.ok(winner && loser);
      assert.deepEqual(winner.answer, {
        status: 'fulfilled',
        value: `${winner.action} accepted from ${winner.operator}`,
      });
      const refusal = loser.answer.status === 'rejected' ? (loser.answer.reason as unknown) : undefined;
      assert.ok(refusal instanceof WorkflowUpdateFailedError, 'the other is refused');
      // Told either while the winner's decision is pending or once the deployment has moved on from it.
      assert.match(
        refusal.cause?.message ?? '',
        new RegExp(`already resolved: ${winner.action} by ${escape(winner.operator)}|nothing to resolve`),
      );

      assert.equal(
        status.state,
        winner.action === 'retry' ? 'rolled-back' : 'abandoned',
        'the decision taken is the accepted one',
      );
      assert.deepEqual(
        status.rollback?.operatorDecisions.map((d) => `${d.action}:${d.operator}`),
        [`${winner.action}:${winner.operator}`],
      );
      assert.equal(called(calls, 'restoreRelease'), winner.action === 'retry' ? 2 : 1);
      assert.deepEqual(
        status.audit
          ?.filter((e) => e.action === 'resolve')
          .map((e) => `${e.outcome}:${e.actor}`)
          .sort(),
        [`accepted:${winner.operator}`, `refused:${loser.operator}`],
      );
      // Each resolve is verified by an activity, so both reach the handler; only one Update completes successfully.
      const outcomes = events.flatMap((e) => {
        const completed = e.workflowExecutionUpdateCompletedEventAttributes;
        return completed ? [`${completed.meta?.updateId}:${completed.outcome?.failure ? 'failed' : 'succeeded'}`] : [];
      });
      assert.deepEqual(outcomes.sort(), [`${loser.id}:failed`, `${winner.id}:succeeded`].sort());
    },
  );

  it(
    'counts the first of two resolve Updates handled in one workflow task',
    {
      timeout: 60_000,
    },
    async () => {
      const { first, second, status } = await twoResolvesInOneTask();
      assert.deepEqual(first, {
        status: 'fulfilled',
        value: 'retry accepted from alice (unverified, insecure dev mode)',
      });
      assert.equal(second.status, 'rejected');
      assert.equal(status.state, 'rolled-back');
    },
  );

  it(
    'closes the approval gate when its wait is cancelled: a later vote is refused, not counted',
    { timeout: 60_000 },
    async () => {
      const report = held((status: DeploymentStatus) => `reports/${status.deploymentId}.md`);
      const test = setup('production', { publishReport: report.activity });
      const { activities, calls } = test;
      const taskQueue = `race-cancel-vote-${sequence}-${Date.now()}`;
      const status = await withWorker(taskQueue, activities, async () => {
        const handle = await start(taskQueue, test);
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
            handle.executeUpdate(voteUpdate, {
              args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: dev('alice') }],
            }),
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
      assert.match(status.approval?.refused[0]?.reason ?? '', /vote by Signal carries no proof/);
      assert.equal(called(calls, 'applyRelease'), 0);
    },
  );

  it(
    'writes the report of a deploy cancelled at approval and completes with its status',
    { timeout: 60_000 },
    async () => {
      const test = setup('production');
      const { activities, calls } = test;
      const taskQueue = `race-cancel-report-${sequence}-${Date.now()}`;
      const { status, execution } = await withWorker(taskQueue, activities, async () => {
        const handle = await start(taskQueue, test);
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
