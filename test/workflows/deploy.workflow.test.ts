/**
 * Workflow behaviour on the Temporal time-skipping test server: timers of hours pass in moments, activities are
 * stubs (the real ones are exercised end to end against Docker elsewhere).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DeployRequest } from '../../domain/requests.js';
import { parseSpec, resolveEnvironment } from '../../domain/spec.js';
import { timeSkippingServerPath } from '../../stack/temporal.js';
import type { deployWorkflow, rollbackWorkflow } from '../../workflows/index.js';
import {
  resolveCompensationUpdate,
  searchAttributes,
  statusQuery,
  voteSignal,
  voteUpdate,
} from '../../workflows/messages.js';
import { called, OLD_RELEASE, stubActivities, untilCancelled } from '../support/stub-activities.js';
import { registerSearchAttributes, workflowBundle } from '../support/temporal.js';
import { WORKER_TUNING } from '../../worker/index.js';

let env: TestWorkflowEnvironment;
let sequence = 0;

function request(environment: 'staging' | 'production', budgets: Record<string, string> = {}): DeployRequest {
  const service = `web-${++sequence}`;
  const spec = parseSpec(
    {
      service,
      target: 'docker',
      image: { repository: '127.0.0.1:5000/web' },
      environments: {
        staging: { docker: { host: 'unix:///stub.sock', hostPort: 18080 }, budgets },
        production: {
          protected: true,
          deployers: ['ci-bot'],
          docker: { host: 'unix:///stub.sock', hostPort: 18081 },
          approval: { required: 1, approvers: ['alice', 'bob', 'ci-bot'], deadline: '24h' },
          rollbackRequiresApproval: true,
          budgets,
        },
      },
    },
    'deploy.yaml',
  );
  return { target: resolveEnvironment(spec, environment), version: '1.1.0', requestedBy: 'ci-bot' };
}

async function withWorker<T>(activities: Activities, work: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `test-${sequence}-${Date.now()}`;
  const worker = await Worker.create({
    ...WORKER_TUNING,
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities,
  });
  return worker.runUntil(work(taskQueue));
}

function start(taskQueue: string, deploy: DeployRequest) {
  return env.client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
    taskQueue,
    workflowId: `${deploy.target.service}.${deploy.target.environment}`,
    args: [deploy],
  });
}

async function waitForRefusals(query: () => Promise<DeploymentStatus>, count: number): Promise<DeploymentStatus> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const status = await query();
    if ((status.approval?.refused.length ?? 0) >= count) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${count} refused votes not recorded`);
}

async function waitForState(
  query: () => Promise<DeploymentStatus>,
  state: DeploymentStatus['state'],
): Promise<DeploymentStatus> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const status = await query();
    if (status.state === state) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`state ${state} not reached`);
}

describe('deploy workflow (time-skipping server)', { timeout: 600_000 }, () => {
  before(async () => {
    env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } },
    });
    await registerSearchAttributes(env.connection);
    await workflowBundle();
  });
  after(async () => env?.teardown());

  it('succeeds through every phase when nothing fails', { timeout: 60_000 }, async () => {
    const { activities, calls } = stubActivities();
    const status = await withWorker(activities, async (queue) => (await start(queue, request('staging'))).result());
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.phases.map((p) => `${p.name}:${p.status}`),
      [
        'validate:succeeded',
        'track-changes:skipped',
        'approval:skipped',
        'environment-update:succeeded',
        'rollback-point:succeeded',
        'apply:succeeded',
        'verify:succeeded',
        'report:succeeded',
      ],
    );
    assert.equal(called(calls, 'restoreRelease'), 0);
    assert.equal(status.phases.find((p) => p.name === 'validate')?.budgetMs, 120_000);
    assert.equal(status.phases.find((p) => p.name === 'environment-update')?.budgetMs, 180_000);
    assert.equal(status.phases.find((p) => p.name === 'rollback-point')?.budgetMs, undefined, 'no budget of its own');
  });

  // The environment update is one budget from the rollback point to the verified release, not one per step.
  it(
    'rolls back an environment update whose rollback point and apply together overrun its budget',
    { timeout: 60_000 },
    async () => {
      const slowly = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      const { activities, calls } = stubActivities({
        snapshotRelease: async () => {
          await slowly(1_500);
          return OLD_RELEASE;
        },
        applyRelease: untilCancelled,
      });
      const status = await withWorker(activities, async (queue) =>
        (await start(queue, request('staging', { environmentUpdate: '3s' }))).result(),
      );
      assert.equal(status.state, 'rolled-back');
      assert.match(status.rollback?.reason ?? '', /phase environment-update exceeded its budget of 3s/);
      const update = status.phases.find((p) => p.name === 'environment-update');
      assert.equal(update?.status, 'failed');
      assert.equal(called(calls, 'restoreRelease'), 1);
    },
  );

  it('compensates a manual rollback whose restore overruns the rollback budget', { timeout: 60_000 }, async () => {
    const wanted = { ...OLD_RELEASE, handle: 'older', version: '0.9.0' };
    const { activities, calls } = stubActivities({
      findKeptRelease: () => Promise.resolve(wanted),
      restoreRelease: (request) =>
        request.to.handle === wanted.handle ? untilCancelled() : Promise.resolve(request.to),
    });
    const status = await withWorker(activities, async (queue) =>
      env.client.workflow.execute<typeof rollbackWorkflow>('rollbackWorkflow', {
        taskQueue: queue,
        workflowId: `rollback-budget-${sequence}`,
        args: [{ target: request('staging', { rollback: '2s' }).target, requestedBy: 'ci-bot' }],
      }),
    );
    assert.equal(status.state, 'rolled-back', 'compensation brought back what ran before the rollback');
    assert.match(status.rollback?.reason ?? '', /phase rollback exceeded its budget of 2s/);
    assert.equal(status.phases.find((p) => p.name === 'rollback')?.status, 'failed');
    const restored = calls
      .filter((c) => c.name === 'restoreRelease')
      .map((c) => (c.args[0] as { to: { handle?: string } }).to.handle);
    assert.deepEqual(restored, ['older', OLD_RELEASE.handle]);
  });

  it('lets a 24 h approval deadline pass without touching the target', { timeout: 60_000 }, async () => {
    const { activities, calls } = stubActivities();
    const wallStart = Date.now();
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('production'));
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      return handle.result();
    });
    assert.equal(status.state, 'expired');
    assert.match(status.errors.join('\n'), /approval deadline .* passed with 0 of 1 approvals/);
    const approval = status.phases.find((p) => p.name === 'approval');
    assert.ok(approval?.endedAt && Date.parse(approval.endedAt) - Date.parse(approval.startedAt) >= 24 * 3_600_000);
    assert.equal(called(calls, 'snapshotRelease') + called(calls, 'applyRelease') + called(calls, 'restoreRelease'), 0);
    process.stdout.write(`# 24 h deadline took ${Date.now() - wallStart} ms of wall time\n`);
  });

  // The test server does not skip time while an activity runs, so this budget is shortened to seconds.
  it('fails a validation that overruns its budget before anything is touched', { timeout: 60_000 }, async () => {
    const { activities, calls } = stubActivities({ inspectEnvironment: untilCancelled });
    const status = await withWorker(activities, async (queue) =>
      (await start(queue, request('staging', { validate: '2s' }))).result(),
    );
    assert.equal(status.state, 'failed');
    assert.match(status.errors.join('\n'), /phase validate exceeded its budget of 2s/);
    assert.equal(called(calls, 'snapshotRelease') + called(calls, 'applyRelease'), 0);
  });

  it('compensates a failing apply: restores the rollback point and verifies it', { timeout: 60_000 }, async () => {
    const { activities, calls } = stubActivities({
      applyRelease: () =>
        Promise.reject(ApplicationFailure.nonRetryable('engine refused the container', 'InvalidRelease')),
    });
    const status = await withWorker(activities, async (queue) => (await start(queue, request('staging'))).result());
    assert.equal(status.state, 'rolled-back');
    assert.equal(called(calls, 'restoreRelease'), 1);
    assert.deepEqual((calls.find((c) => c.name === 'restoreRelease')?.args[0] as { to: unknown }).to, OLD_RELEASE);
    assert.equal(status.rollback?.consistency?.consistent, true);
    assert.match(status.rollback?.reason ?? '', /engine refused the container/);
  });

  it('stays open as compensation-failed until an operator retries', { timeout: 60_000 }, async () => {
    let restoreWorks = false;
    const { activities, calls } = stubActivities({
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
      restoreRelease: ({ to }) =>
        restoreWorks
          ? Promise.resolve(to)
          : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('staging'));
      const stuck = await waitForState(() => handle.query(statusQuery), 'compensation-failed');
      assert.match(stuck.rollback?.errors.join('\n') ?? '', /engine lost the container/);
      const visible = (await handle.describe()).typedSearchAttributes.get(searchAttributes.status);
      assert.equal(visible, 'compensation-failed', 'operators find it by the DeployStatus search attribute');
      await assert.rejects(
        handle.executeUpdate(resolveCompensationUpdate, { args: [{ action: 'retry', operator: '' }] }),
        WorkflowUpdateFailedError,
      );
      restoreWorks = true;
      await handle.executeUpdate(resolveCompensationUpdate, {
        args: [{ action: 'retry', operator: 'oncall', reason: 'engine back' }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'rolled-back');
    assert.equal(status.rollback?.attempts, 2);
    const history = await env.client.workflow.getHandle(`${status.service}.staging`).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history);
    assert.deepEqual(
      status.rollback?.operatorDecisions.map((d) => d.operator),
      ['oncall'],
    );
    assert.ok(called(calls, 'restoreRelease') >= 2);
  });

  it('ends abandoned (exit 5) when the operator abandons a failed compensation', { timeout: 60_000 }, async () => {
    const { activities } = stubActivities({
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('unhealthy', 'Unhealthy')),
      verifyRelease: () =>
        Promise.resolve({
          consistent: false,
          checks: [{ field: 'imageDigest', expected: 'sha256:a', actual: 'sha256:b', equal: false }],
        }),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('staging'));
      await waitForState(() => handle.query(statusQuery), 'compensation-failed');
      await handle.executeUpdate(resolveCompensationUpdate, {
        args: [{ action: 'abandon', operator: 'oncall', reason: 'fixed by hand' }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'abandoned');
    assert.equal(status.rollback?.consistency?.consistent, false);
  });

  it('refuses invalid votes: Updates before history, Signals recorded as refused', { timeout: 60_000 }, async () => {
    const { activities } = stubActivities();
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('production'));
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      for (const [approver, reason] of [
        ['ci-bot', /requested this deployment/],
        ['mallory', /may not approve/],
      ] as const)
        await assert.rejects(
          handle.executeUpdate(voteUpdate, { args: [{ approver, decision: 'approve' }] }),
          (error: unknown) => {
            assert.ok(error instanceof WorkflowUpdateFailedError);
            assert.match(error.cause?.message ?? '', reason);
            return true;
          },
        );
      await handle.signal(voteSignal, { approver: 'mallory', decision: 'approve' });
      await handle.signal(voteSignal, { nonsense: true } as never);
      const history = await handle.fetchHistory();
      const updatesInHistory =
        history.events?.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length ?? 0;
      assert.equal(updatesInHistory, 0, 'refused updates leave no trace in history');
      await handle.executeUpdate(voteUpdate, {
        args: [{ approver: 'alice', decision: 'approve', comment: 'ship it' }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
      ['alice:approve:update'],
    );
    assert.deepEqual(
      status.approval?.refused.map((r) => r.approver),
      ['mallory', 'undefined'],
    );
    assert.match(status.approval?.refused[0]?.reason ?? '', /mallory may not approve in production/);
  });

  it('records a Signal vote whose approver is a hostile object as refused, and still counts valid votes', async () => {
    const { activities } = stubActivities();
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('production'));
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      await handle.signal(voteSignal, { approver: { toString: 1 }, decision: 'approve' } as never);
      const refused = await waitForRefusals(() => handle.query(statusQuery), 1);
      assert.equal(refused.state, 'awaiting-approval', 'the workflow is still waiting, not failing its task');
      await handle.executeUpdate(voteUpdate, { args: [{ approver: 'alice', decision: 'approve' }] });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.equal(status.approval?.refused[0]?.approver, '{"toString":1}');
  });

  it('ends rejected, with who and why, without touching the target', { timeout: 60_000 }, async () => {
    const { activities, calls } = stubActivities();
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, request('production'));
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      await handle.signal(voteSignal, { approver: 'bob', decision: 'reject', comment: 'freeze week' });
      return handle.result();
    });
    assert.equal(status.state, 'rejected');
    assert.match(status.errors.join('\n'), /rejected by bob: freeze week/);
    assert.equal(called(calls, 'applyRelease'), 0);
  });

  it(
    'rolls back manually only once an approver authorizes it, and compensates a failed restore',
    { timeout: 60_000 },
    async () => {
      const { activities, calls } = stubActivities({
        awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('restored release unhealthy', 'Unhealthy')),
      });
      const deploy = request('production');
      const status = await withWorker(activities, async (taskQueue) => {
        const handle = await env.client.workflow.start<typeof rollbackWorkflow>('rollbackWorkflow', {
          taskQueue,
          workflowId: `${deploy.target.service}.production`,
          args: [{ target: deploy.target, requestedBy: 'ci-bot', reason: 'bad release' }],
        });
        await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
        assert.equal(called(calls, 'restoreRelease'), 0);
        await handle.executeUpdate(voteUpdate, { args: [{ approver: 'alice', decision: 'approve' }] });
        return handle.result();
      });
      assert.equal(status.kind, 'rollback');
      assert.equal(status.state, 'rolled-back');
      const restores = calls
        .filter((c) => c.name === 'restoreRelease')
        .map((c) => c.args[0] as { keepCurrent: boolean });
      assert.deepEqual(
        restores.map((r) => r.keepCurrent),
        [true, true],
      );
      assert.match(status.rollback?.reason ?? '', /rollback failed: .*restored release unhealthy/);
    },
  );
});
