/**
 * Workflow behaviour on the Temporal time-skipping test server: timers of hours pass in moments, activities are
 * stubs (the real ones are exercised end to end against Docker elsewhere).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { type Client, WorkflowUpdateFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import { type DeploymentStatus, lockId } from '../../domain/deployment.js';
import { fail } from '../../domain/failures.js';
import type { Credential } from '../../domain/identity.js';
import type { DeployRequest, RollbackRequest } from '../../domain/requests.js';
import type { deployWorkflow, rollbackWorkflow } from '../../workflows/index.js';
import {
  resolveCompensationUpdate,
  searchAttributes,
  statusQuery,
  voteSignal,
  voteUpdate,
} from '../../workflows/messages.js';
import {
  called,
  OLD_RELEASE,
  stubActivities,
  stubLoadPolicy,
  testPolicy,
  untilCancelled,
  TEST_CONTENT_HASH,
  TEST_PLAN,
} from '../support/stub-activities.js';
import { runTestWorker, startTimeSkippingServer, testDataConverter, workflowBundle } from '../support/temporal.js';

let env: TestWorkflowEnvironment;
let client: Client;
let sequence = 0;

/** These tests are about workflow logic, not identity: names stand for who sends a message. */
const dev = (user: string): Credential => ({ kind: 'insecure-dev', user });

interface Setup {
  service: string;
  deploy: DeployRequest;
  activities: Activities;
  calls: ReturnType<typeof stubActivities>['calls'];
}

/** A deploy of a service of its own (its own lock), under the test policy with these budgets and activity stubs. */
function setup(
  environment: 'staging' | 'production',
  overrides: Partial<Activities> = {},
  budgets: Record<string, string> = {},
): Setup {
  const service = `web-${++sequence}`;
  const { activities, calls } = stubActivities({
    loadPolicy: stubLoadPolicy(testPolicy(budgets, [service])),
    ...overrides,
  });
  const deploy: DeployRequest = {
    spec: { service, target: 'docker', image: { repository: '127.0.0.1:5000/web' } },
    environment,
    version: '1.1.0',
    credential: dev('ci-bot'),
  };
  return { service, deploy, activities, calls };
}

function rollbackOf({ deploy }: Setup, reason?: string): RollbackRequest {
  return { spec: deploy.spec, environment: deploy.environment, credential: deploy.credential, reason };
}

const lockOf = ({ service, deploy }: Setup) => lockId(service, deploy.environment);

function withWorker<T>(activities: Activities, work: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `test-${sequence}-${Date.now()}`;
  return runTestWorker({ connection: env.nativeConnection, taskQueue, activities }, () => work(taskQueue));
}

function start(taskQueue: string, test: Setup) {
  return client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
    taskQueue,
    workflowId: lockOf(test),
    args: [test.deploy],
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
    ({ env, client } = await startTimeSkippingServer());
  });
  after(async () => env?.teardown());

  it('succeeds through every phase when nothing fails', { timeout: 60_000 }, async () => {
    const test = setup('staging');
    const status = await withWorker(test.activities, async (queue) => (await start(queue, test)).result());
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.phases.map((p) => `${p.name}:${p.status}`),
      [
        'admission:succeeded',
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
    assert.equal(called(test.calls, 'restoreRelease'), 0);
    assert.equal(status.phases.find((p) => p.name === 'validate')?.budgetMs, 120_000);
    assert.equal(status.phases.find((p) => p.name === 'environment-update')?.budgetMs, 180_000);
    assert.equal(status.phases.find((p) => p.name === 'rollback-point')?.budgetMs, undefined, 'no budget of its own');
    assert.equal(status.policyHash, 'test-policy');
    assert.equal(status.requestedBy, 'ci-bot (unverified, insecure dev mode)');
    assert.equal(status.unverifiedIdentities, true);
    assert.deepEqual(
      status.audit?.map((e) => `${e.action}:${e.outcome}`),
      ['request:accepted'],
    );
  });

  // The environment update is one budget from the rollback point to the verified release, not one per step.
  it(
    'rolls back an environment update whose rollback point and apply together overrun its budget',
    { timeout: 60_000 },
    async () => {
      const slowly = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      const test = setup(
        'staging',
        {
          snapshotRelease: async () => {
            await slowly(1_500);
            return OLD_RELEASE;
          },
          applyRelease: untilCancelled,
        },
        { environmentUpdate: '3s' },
      );
      const status = await withWorker(test.activities, async (queue) => (await start(queue, test)).result());
      assert.equal(status.state, 'rolled-back');
      assert.match(status.rollback?.reason ?? '', /phase environment-update exceeded its budget of 3s/);
      const update = status.phases.find((p) => p.name === 'environment-update');
      assert.equal(update?.status, 'failed');
      assert.equal(called(test.calls, 'restoreRelease'), 1);
    },
  );

  it('compensates a manual rollback whose restore overruns the rollback budget', { timeout: 60_000 }, async () => {
    const wanted = { ...OLD_RELEASE, handle: 'older', version: '0.9.0' };
    const test = setup(
      'staging',
      {
        findKeptRelease: () => Promise.resolve(wanted),
        restoreRelease: (request) =>
          request.to.handle === wanted.handle ? untilCancelled() : Promise.resolve(request.to),
      },
      { rollback: '2s' },
    );
    const status = await withWorker(test.activities, async (queue) =>
      client.workflow.execute<typeof rollbackWorkflow>('rollbackWorkflow', {
        taskQueue: queue,
        workflowId: lockOf(test),
        args: [rollbackOf(test)],
      }),
    );
    assert.equal(status.state, 'rolled-back', 'compensation brought back what ran before the rollback');
    assert.match(status.rollback?.reason ?? '', /phase rollback exceeded its budget of 2s/);
    assert.equal(status.phases.find((p) => p.name === 'rollback')?.status, 'failed');
    const restored = test.calls
      .filter((c) => c.name === 'restoreRelease')
      .map((c) => (c.args[0] as { to: { handle?: string } }).to.handle);
    assert.deepEqual(restored, ['older', OLD_RELEASE.handle]);
  });

  it('lets a 24 h approval deadline pass without touching the target', { timeout: 60_000 }, async () => {
    const test = setup('production');
    const wallStart = Date.now();
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
      const waiting = await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      // Just past the deadline (its timer starts a moment after the gate records it), never as far as a budget.
      const deadline = Date.parse(waiting.approval?.deadline ?? '');
      await env.sleep(deadline + 1_000 - (await env.currentTimeMs()));
      return handle.result();
    });
    assert.equal(status.state, 'expired');
    assert.match(status.errors.join('\n'), /approval deadline .* passed with 0 of 1 approvals/);
    const approval = status.phases.find((p) => p.name === 'approval');
    assert.ok(approval?.endedAt && Date.parse(approval.endedAt) - Date.parse(approval.startedAt) >= 24 * 3_600_000);
    const { calls } = test;
    assert.equal(called(calls, 'snapshotRelease') + called(calls, 'applyRelease') + called(calls, 'restoreRelease'), 0);
    process.stdout.write(`# 24 h deadline took ${Date.now() - wallStart} ms of wall time\n`);
  });

  // The test server does not skip time while an activity runs, so this budget is shortened to seconds.
  it('fails a validation that overruns its budget before anything is touched', { timeout: 60_000 }, async () => {
    const test = setup('staging', { inspectEnvironment: untilCancelled }, { validate: '2s' });
    const status = await withWorker(test.activities, async (queue) => (await start(queue, test)).result());
    assert.equal(status.state, 'failed');
    assert.match(status.errors.join('\n'), /phase validate exceeded its budget of 2s/);
    assert.equal(called(test.calls, 'snapshotRelease') + called(test.calls, 'applyRelease'), 0);
  });

  it('compensates a failing apply: restores the rollback point and verifies it', { timeout: 60_000 }, async () => {
    const test = setup('staging', {
      applyRelease: () =>
        Promise.reject(ApplicationFailure.nonRetryable('engine refused the container', 'InvalidRelease')),
    });
    const status = await withWorker(test.activities, async (queue) => (await start(queue, test)).result());
    assert.equal(status.state, 'rolled-back');
    assert.equal(called(test.calls, 'restoreRelease'), 1);
    assert.deepEqual((test.calls.find((c) => c.name === 'restoreRelease')?.args[0] as { to: unknown }).to, OLD_RELEASE);
    assert.equal(status.rollback?.consistency?.consistent, true);
    assert.match(status.rollback?.reason ?? '', /engine refused the container/);
  });

  it('stays open as compensation-failed until an operator retries', { timeout: 60_000 }, async () => {
    let restoreWorks = false;
    const test = setup('staging', {
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
      restoreRelease: ({ to }) =>
        restoreWorks
          ? Promise.resolve(to)
          : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
    });
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
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
        args: [{ action: 'retry', reason: 'engine back', credential: dev('oncall') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'rolled-back');
    assert.equal(status.rollback?.attempts, 2);
    const history = await client.workflow.getHandle(lockOf(test)).fetchHistory();
    // Replayed under its own id: admission compares the workflow id with the lock of the request.
    await Worker.runReplayHistory(
      { workflowBundle: await workflowBundle(), dataConverter: testDataConverter() },
      history,
      lockOf(test),
    );
    assert.deepEqual(
      status.rollback?.operatorDecisions.map((d) => d.operator),
      ['oncall (unverified, insecure dev mode)'],
    );
    assert.ok(called(test.calls, 'restoreRelease') >= 2);
  });

  it('ends abandoned (exit 5) when the operator abandons a failed compensation', { timeout: 60_000 }, async () => {
    const test = setup('staging', {
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('unhealthy', 'Unhealthy')),
      verifyRelease: () =>
        Promise.resolve({
          consistent: false,
          checks: [{ field: 'imageDigest', expected: 'sha256:a', actual: 'sha256:b', equal: false }],
        }),
    });
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
      await waitForState(() => handle.query(statusQuery), 'compensation-failed');
      await handle.executeUpdate(resolveCompensationUpdate, {
        args: [{ action: 'abandon', reason: 'fixed by hand', credential: dev('oncall') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'abandoned');
    assert.equal(status.rollback?.consistency?.consistent, false);
  });

  it(
    'refuses invalid votes: malformed Updates before history, the rest and all Signals recorded as refused',
    { timeout: 60_000 },
    async () => {
      const test = setup('production');
      const status = await withWorker(test.activities, async (queue) => {
        const handle = await start(queue, test);
        await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
        // A vote naming its approver, as runs before proven identities took: no credential, so malformed now.
        await assert.rejects(
          handle.executeUpdate(voteUpdate, {
            updateId: 'malformed',
            args: [{ approver: 'alice', decision: 'approve' }],
          }),
          (error: unknown) => {
            assert.ok(error instanceof WorkflowUpdateFailedError);
            assert.match(error.cause?.message ?? '', /invalid vote: .*credential/);
            return true;
          },
        );
        for (const [approver, reason] of [
          ['ci-bot', /requested this deployment/],
          ['mallory', /may not approve/],
        ] as const)
          await assert.rejects(
            handle.executeUpdate(voteUpdate, {
              args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: dev(approver) }],
            }),
            (error: unknown) => {
              assert.ok(error instanceof WorkflowUpdateFailedError);
              assert.match(error.cause?.message ?? '', reason);
              return true;
            },
          );
        await handle.signal(voteSignal, { approver: 'mallory', decision: 'approve' });
        await handle.signal(voteSignal, { nonsense: true });
        const history = await handle.fetchHistory();
        const accepted = (history.events ?? []).flatMap(
          (e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId ?? [],
        );
        assert.equal(accepted.length, 2, 'the two well-formed votes reached the handler, to be verified');
        assert.ok(!accepted.includes('malformed'), 'a malformed Update leaves no trace in history');
        await handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, comment: 'ship it', credential: dev('alice') }],
        });
        return handle.result();
      });
      assert.equal(status.state, 'succeeded');
      assert.deepEqual(
        status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
        ['alice:approve:update'],
      );
      assert.deepEqual(
        status.approval?.refused.map((r) => `${r.approver}:${r.via}`),
        ['ci-bot:update', 'mallory:update', 'mallory:signal', 'undefined:signal'],
      );
      assert.match(status.approval?.refused[1]?.reason ?? '', /mallory may not approve in production/);
      assert.match(status.approval?.refused[2]?.reason ?? '', /a vote by Signal carries no proof of identity/);
    },
  );

  it('records a Signal vote whose approver is a hostile object as refused, and still counts valid votes', async () => {
    const test = setup('production');
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      await handle.signal(voteSignal, { approver: { toString: 1 }, decision: 'approve' });
      const refused = await waitForRefusals(() => handle.query(statusQuery), 1);
      assert.equal(refused.state, 'awaiting-approval', 'the workflow is still waiting, not failing its task');
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: dev('alice') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.equal(status.approval?.refused[0]?.approver, '{"toString":1}');
  });

  it(
    'shows the plan before the vote, refuses an approval without or with another content hash, and applies the validated content',
    { timeout: 60_000 },
    async () => {
      const test = setup('production');
      const status = await withWorker(test.activities, async (queue) => {
        const handle = await start(queue, test);
        const waiting = await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
        assert.deepEqual(waiting.plan, TEST_PLAN, 'the status shows the plan while the deployment waits');
        const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        assert.match(metadata.currentDetails ?? '', new RegExp(`Content hash: ${TEST_CONTENT_HASH}`));
        assert.match(metadata.currentDetails ?? '', /Settings changed: image, env\.LOG_LEVEL/);
        const other = `sha256:${'e'.repeat(64)}`;
        for (const [contentHash, reason] of [
          [undefined, /an approval must name the content it approves: the validated content is sha256:d{64}/],
          [other, /the vote approves content sha256:e{64}, but the validated content is sha256:d{64}/],
        ] as const)
          await assert.rejects(
            handle.executeUpdate(voteUpdate, {
              args: [{ decision: 'approve', contentHash, credential: dev('alice') }],
            }),
            (error: unknown) => {
              assert.ok(error instanceof WorkflowUpdateFailedError);
              assert.match(error.cause?.message ?? '', reason);
              return true;
            },
          );
        await handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: dev('bob') }],
        });
        return handle.result();
      });
      assert.equal(status.state, 'succeeded');
      assert.deepEqual(
        status.approval?.votes.map((v) => `${v.approver}:${v.decision}`),
        ['bob:approve'],
      );
      assert.deepEqual(
        status.approval?.refused.map((r) => r.approver),
        ['alice', 'alice'],
        'both refusals are recorded, with the proven voter',
      );
      const audited = (status.audit ?? []).filter((e) => e.action === 'vote' && e.outcome === 'refused');
      assert.equal(audited.length, 2);
      assert.match(audited[1]?.reason ?? '', /approve by update: the vote approves content sha256:e{64}/);
      const apply = test.calls.find((c) => c.name === 'applyRelease');
      assert.equal((apply?.args[0] as { contentHash?: string }).contentHash, TEST_CONTENT_HASH);
      assert.equal(called(test.calls, 'planRelease'), 1);
    },
  );

  it('needs approval for a change of configuration alone, the image unchanged', { timeout: 60_000 }, async () => {
    const plan = { ...TEST_PLAN, imageChanged: false, configChanges: ['env.LOG_LEVEL'] };
    const test = setup('production', { planRelease: () => Promise.resolve(plan) });
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
      const waiting = await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      assert.equal(waiting.plan?.imageChanged, false);
      assert.deepEqual(waiting.plan?.configChanges, ['env.LOG_LEVEL']);
      assert.equal(called(test.calls, 'applyRelease'), 0, 'nothing applied before the approval');
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'reject', comment: 'not this setting', credential: dev('bob') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'rejected', 'a rejection needs no content hash');
    assert.equal(called(test.calls, 'applyRelease'), 0);
  });

  it('ends invalid, its rollback point proven intact, when apply finds the content changed since validation', async () => {
    const test = setup('staging', {
      applyRelease: () => Promise.reject(fail('contentChanged', 'the release manifests changed after validation')),
    });
    const status = await withWorker(test.activities, async (queue) => (await start(queue, test)).result());
    assert.equal(status.state, 'invalid');
    assert.equal(called(test.calls, 'applyRelease'), 1, 'not retried');
    assert.equal(status.rollback?.consistency?.consistent, true, 'the target is shown to be as it was');
    assert.match(status.errors.join('\n'), /manifests changed after validation/);
  });

  it('ends rejected, with who and why, without touching the target', { timeout: 60_000 }, async () => {
    const test = setup('production');
    const status = await withWorker(test.activities, async (queue) => {
      const handle = await start(queue, test);
      await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'reject', comment: 'freeze week', credential: dev('bob') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'rejected');
    assert.match(status.errors.join('\n'), /rejected by bob: freeze week/);
    assert.equal(called(test.calls, 'applyRelease'), 0);
  });

  it(
    'rolls back manually only once an approver authorizes it, and compensates a failed restore',
    { timeout: 60_000 },
    async () => {
      const test = setup('production', {
        awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('restored release unhealthy', 'Unhealthy')),
      });
      const status = await withWorker(test.activities, async (taskQueue) => {
        const handle = await client.workflow.start<typeof rollbackWorkflow>('rollbackWorkflow', {
          taskQueue,
          workflowId: lockOf(test),
          args: [rollbackOf(test, 'bad release')],
        });
        await waitForState(() => handle.query(statusQuery), 'awaiting-approval');
        assert.equal(called(test.calls, 'restoreRelease'), 0);
        await handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: dev('alice') }],
        });
        return handle.result();
      });
      assert.equal(status.kind, 'rollback');
      assert.equal(status.state, 'rolled-back');
      const restores = test.calls
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
