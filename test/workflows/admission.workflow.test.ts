/**
 * Admission and every later decision on the time-skipping server: requests parsed before anything else, identities
 * proven by the (stubbed) verification activity, judged by the worker's policy, each decision audited.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { type Client, type WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities } from '../../activities/index.js';
import type { AuditEvent } from '../../domain/audit.js';
import { type DeploymentStatus, lockId } from '../../domain/deployment.js';
import type { Credential } from '../../domain/identity.js';
import type { DeployRequest, RollbackRequest } from '../../domain/requests.js';
import type { deployWorkflow, rollbackWorkflow } from '../../workflows/index.js';
import { resolveCompensationUpdate, statusQuery, voteSignal, voteUpdate } from '../../workflows/messages.js';
import {
  called,
  type Calls,
  stubActivities,
  stubLoadPolicy,
  stubVerifyCredentialStrictly,
  testToken,
  TEST_CONTENT_HASH,
} from '../support/stub-activities.js';
import { runTestWorker, startTimeSkippingServer } from '../support/temporal.js';

let env: TestWorkflowEnvironment;
let client: Client;
let sequence = 0;

const dev = (user: string): Credential => ({ kind: 'insecure-dev', user });
/** A token the stub verification accepts as proof of this user and groups, with an id of its own. */
const token = (user: string, groups: string[] = [], jti = `jti-${++sequence}-${user}`): Credential => ({
  kind: 'oidc',
  token: testToken(user, groups, jti),
});

const DOCKER = { host: 'unix:///stub.sock' };
const PRODUCTION = {
  protected: true,
  deployers: ['ci-bot', 'group:release-managers'],
  approval: { required: 1, approvers: ['alice', 'bob', 'group:release-managers'], deadline: '24h' },
};

/** A policy whose environments all publish a port for each of `services`. */
function policy(
  services: string[],
  environments: Record<string, Record<string, unknown>>,
  identity: Record<string, unknown> = { insecureDevMode: true },
): Record<string, unknown> {
  const ports = Object.fromEntries(services.map((service, i) => [service, 18_000 + i]));
  return {
    identity,
    environments: Object.fromEntries(
      Object.entries(environments).map(([name, settings]) => [name, { docker: { ...DOCKER, ports }, ...settings }]),
    ),
  };
}

const newService = () => `adm-${++sequence}`;

function deployRequest(
  service: string,
  environment: string,
  credential: Credential,
  extra: Partial<DeployRequest> = {},
): DeployRequest {
  return {
    spec: { service, target: 'docker', image: { repository: '127.0.0.1:5000/web' } },
    environment,
    version: '1.1.0',
    credential,
    ...extra,
  };
}

function withWorker<T>(activities: Activities, work: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `admission-${sequence}-${Date.now()}`;
  return runTestWorker({ connection: env.nativeConnection, taskQueue, activities }, () => work(taskQueue));
}

function start(taskQueue: string, request: DeployRequest, workflowId?: string) {
  return client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
    taskQueue,
    workflowId: workflowId ?? lockId(request.spec.service as string, request.environment),
    args: [request],
  });
}

async function waitFor(
  handle: WorkflowHandle,
  what: string,
  reached: (status: DeploymentStatus) => boolean,
): Promise<DeploymentStatus> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const status = await handle.query(statusQuery);
    if (reached(status)) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} not reached`);
}

const awaitingApproval = (handle: WorkflowHandle) =>
  waitFor(handle, 'awaiting-approval', (s) => s.state === 'awaiting-approval');

/** An Update refused with a message matching `reason`. */
async function refused(update: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(update, (error: unknown) => {
    assert.ok(error instanceof WorkflowUpdateFailedError, String(error));
    assert.match(error.cause?.message ?? '', reason);
    return true;
  });
}

const audited = (status: DeploymentStatus) =>
  (status.audit ?? []).map((e: AuditEvent) => `${e.action}:${e.outcome}:${e.actor}`);

/** Activities the workflow called that look at or change a target. */
const TARGET_ACTIVITIES = [
  'inspectEnvironment',
  'resolveImage',
  'snapshotRelease',
  'applyRelease',
  'restoreRelease',
  'verifyRelease',
  'awaitReady',
  'findKeptRelease',
  'dryRunRelease',
  'diffRelease',
];
const targetCalls = (calls: Calls) => calls.filter((c) => TARGET_ACTIVITIES.includes(c.name)).map((c) => c.name);

describe('admission and decisions (time-skipping server)', { timeout: 600_000 }, () => {
  before(async () => {
    ({ env, client } = await startTimeSkippingServer());
  });
  after(async () => env?.teardown());

  it('ends a malformed request invalid at once, with a report, before any policy, identity or target', async () => {
    const inputs: [string, 'deployWorkflow' | 'rollbackWorkflow', unknown, RegExp][] = [
      ['empty', 'deployWorkflow', {}, /the request is invalid: .*spec.*environment.*credential/],
      ['null', 'deployWorkflow', null, /the request is invalid/],
      ['text', 'deployWorkflow', 'deploy web 1.1.0 please', /the request is invalid/],
      ['array', 'rollbackWorkflow', [{ environment: 'staging' }], /the request is invalid/],
      [
        'extra field',
        'deployWorkflow',
        { ...deployRequest('web', 'staging', dev('ci-bot')), requestedBy: 'alice' },
        /Unrecognized key: "requestedBy"/,
      ],
      [
        'bad deployment id',
        'rollbackWorkflow',
        { spec: { service: 'web' }, environment: 'staging', credential: dev('ci-bot'), toDeploymentId: '../../etc' },
        /toDeploymentId: expected a deployment id/,
      ],
    ];
    const { activities, calls } = stubActivities();
    // One after another: each ends in its first workflow task, so this takes moments.
    const results = await withWorker(activities, async (taskQueue) => {
      const ended: { name: string; status: DeploymentStatus }[] = [];
      for (const [i, [name, workflow, input]] of inputs.entries()) {
        const status = (await client.workflow.execute(workflow, {
          taskQueue,
          workflowId: `malformed-${sequence}-${i}`,
          args: [input],
        })) as DeploymentStatus;
        ended.push({ name, status });
      }
      return ended;
    });
    for (const [i, { name, status }] of results.entries()) {
      assert.equal(status.state, 'invalid', name);
      assert.deepEqual(
        status.phases.map((p) => `${p.name}:${p.status}`),
        ['admission:failed', 'report:succeeded'],
        name,
      );
      assert.match(status.errors.join('\n'), inputs[i]![3], name);
      assert.equal(status.reportPath, `reports/${status.deploymentId}.md`, `${name}: a report was published`);
      assert.equal(status.requestedBy, '(not verified)', name);
    }
    assert.deepEqual(
      [...new Set(calls.map((c) => c.name))],
      ['publishReport'],
      'no policy, identity or target activity',
    );
    assert.ok(calls.every((c) => (c.args[0] as DeploymentStatus).state === 'invalid'));
  });

  it('ends a rollback whose input is null invalid at once, as a deploy does', {}, async () => {
    const { activities } = stubActivities();
    await withWorker(activities, async (taskQueue) => {
      const handle = await client.workflow.start<typeof rollbackWorkflow>('rollbackWorkflow', {
        taskQueue,
        workflowId: `null-rollback-${++sequence}`,
        args: [null as unknown as RollbackRequest],
      });
      try {
        const ended = await Promise.race([
          handle.result().catch(() => undefined),
          new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000)),
        ]);
        const failures = ((await handle.fetchHistory()).events ?? []).flatMap(
          (e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? [],
        );
        assert.deepEqual(failures.slice(0, 1), [], 'no workflow task failed');
        assert.equal(ended?.state, 'invalid');
      } finally {
        await handle.terminate().catch(() => undefined);
      }
    });
  });

  it('refuses a spec that carries a policy-owned field, naming it, before the policy is loaded', async () => {
    const service = newService();
    const { activities, calls } = stubActivities({ loadPolicy: stubLoadPolicy(policy([service], { staging: {} })) });
    const request = deployRequest(service, 'staging', dev('ci-bot'));
    request.spec = { ...request.spec, approval: { required: 0 }, kubeconfig: '/etc/kubernetes/admin.conf' };
    const status = await withWorker(activities, async (queue) => (await start(queue, request)).result());
    assert.equal(status.state, 'invalid');
    assert.match(status.errors.join('\n'), /approval: owned by the platform policy/);
    assert.match(status.errors.join('\n'), /kubeconfig: owned by the platform policy/);
    assert.equal(called(calls, 'loadPolicy') + called(calls, 'verifyCredential'), 0);
    assert.deepEqual(targetCalls(calls), []);
  });

  it('ends invalid when the workflow id is not the lock of the request', async () => {
    const service = newService();
    const { activities, calls } = stubActivities({ loadPolicy: stubLoadPolicy(policy([service], { staging: {} })) });
    const request = deployRequest(service, 'staging', dev('ci-bot'));
    const status = await withWorker(activities, async (queue) =>
      (await start(queue, request, `someone-else.staging`)).result(),
    );
    assert.equal(status.state, 'invalid');
    assert.match(status.errors.join('\n'), new RegExp(`workflow id someone-else.staging is not ${service}.staging`));
    assert.equal(called(calls, 'loadPolicy') + called(calls, 'verifyCredential'), 0);
    assert.deepEqual(targetCalls(calls), []);
    assert.equal(called(calls, 'publishReport'), 1);
  });

  it('refuses a user the policy does not name as a deployer, audited', async () => {
    const service = newService();
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: PRODUCTION })),
    });
    const status = await withWorker(activities, async (queue) =>
      (await start(queue, deployRequest(service, 'production', token('eve', ['developers'])))).result(),
    );
    assert.equal(status.state, 'invalid');
    assert.equal(status.policyHash, 'test-policy');
    assert.equal(status.requestedBy, 'eve');
    const permission = status.checks.find((c) => c.check === 'permission');
    assert.equal(permission?.passed, false);
    assert.match(
      permission?.detail ?? '',
      /eve may not deploy to production \(deployers: ci-bot, group:release-managers\)/,
    );
    assert.deepEqual(audited(status), ['request:refused:eve']);
    assert.match(status.audit?.[0]?.reason ?? '', /eve may not deploy to production/);
    assert.deepEqual(targetCalls(calls), []);
  });

  it('refuses a forged token, audited as unproven', async () => {
    const service = newService();
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: PRODUCTION })),
    });
    const forged: Credential = { kind: 'oidc', token: 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJjaS1ib3QifQ.' };
    const status = await withWorker(activities, async (queue) =>
      (await start(queue, deployRequest(service, 'production', forged))).result(),
    );
    assert.equal(status.state, 'invalid');
    assert.match(status.errors.join('\n'), /token signature invalid/);
    assert.equal(status.requestedBy, '(not yet verified)');
    assert.deepEqual(audited(status), ['request:refused:(unproven)']);
    assert.equal(status.policyHash, 'test-policy');
    assert.deepEqual(targetCalls(calls), []);
  });

  it('refuses a development-mode name where the policy requires tokens', async () => {
    const service = newService();
    const oidc = { oidc: { issuer: 'https://sso.example.com/realms/platform', audience: 'deploy-agent' } };
    const { activities } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { staging: {} }, oidc)),
      verifyCredential: stubVerifyCredentialStrictly,
    });
    const status = await withWorker(activities, async (queue) =>
      (await start(queue, deployRequest(service, 'staging', dev('ci-bot')))).result(),
    );
    assert.equal(status.state, 'invalid');
    assert.deepEqual(audited(status), ['request:refused:(unproven)']);
    assert.equal(status.unverifiedIdentities, undefined);
  });

  it('counts the approval of a member of an approving group, and audits request and vote', async () => {
    const service = newService();
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: PRODUCTION })),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, deployRequest(service, 'production', token('ci-bot', ['ci'])));
      const waiting = await awaitingApproval(handle);
      assert.equal(waiting.requestedBy, 'ci-bot');
      assert.equal(waiting.policyHash, 'test-policy');
      const record = await handle.executeUpdate(voteUpdate, {
        args: [
          {
            decision: 'approve',
            comment: 'ship it',
            credential: { kind: 'oidc', token: 'test:carol:release-managers:j1' },
            contentHash: TEST_CONTENT_HASH,
          },
        ],
      });
      assert.deepEqual(
        record.votes.map((v) => v.approver),
        ['carol'],
      );
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.equal(status.unverifiedIdentities, undefined, 'every identity was a verified token');
    assert.deepEqual(
      status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
      ['carol:approve:update'],
    );
    assert.deepEqual(audited(status), ['request:accepted:ci-bot', 'vote:accepted:carol']);
    assert.equal(called(calls, 'applyRelease'), 1);
    const verified = calls.filter((c) => c.name === 'verifyCredential').map((c) => c.args[0] as { maxAgeMs?: number });
    assert.equal(verified[0]?.maxAgeMs, undefined, 'a request token is not held to the vote age');
    assert.equal(verified[1]?.maxAgeMs, 300_000, "a vote's token must be fresh");
  });

  it('refuses self-approval, even by a member of an approving group', async () => {
    const service = newService();
    const { activities } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: PRODUCTION })),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, deployRequest(service, 'production', token('carol', ['release-managers'])));
      await awaitingApproval(handle);
      await refused(
        handle.executeUpdate(voteUpdate, {
          args: [
            { decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('carol', ['release-managers']) },
          ],
        }),
        /carol requested this deployment and cannot approve it/,
      );
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('alice') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.approval?.refused.map((r) => `${r.approver}:${r.via}`),
      ['carol:update'],
    );
    assert.deepEqual(audited(status), ['request:accepted:carol', 'vote:refused:carol', 'vote:accepted:alice']);
  });

  it('refuses a token used a second time', async () => {
    const service = newService();
    const twoApprovals = { ...PRODUCTION, approval: { required: 2, approvers: ['alice', 'bob', 'carol'] } };
    const { activities } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: twoApprovals })),
    });
    const replayed = token('alice', [], 'jti-replayed-0001');
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, deployRequest(service, 'production', token('ci-bot')));
      await awaitingApproval(handle);
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: replayed }],
      });
      await refused(
        handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: replayed }],
        }),
        /this token was already used for a vote/,
      );
      await refused(
        handle.executeUpdate(voteUpdate, {
          args: [
            { decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('bob', [], 'jti-replayed-0001') },
          ],
        }),
        /this token was already used for a vote/,
      );
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('bob') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.approval?.votes.map((v) => v.approver),
      ['alice', 'bob'],
    );
    assert.deepEqual(audited(status), [
      'request:accepted:ci-bot',
      'vote:accepted:alice',
      'vote:refused:alice',
      'vote:refused:bob',
      'vote:accepted:bob',
    ]);
  });

  it('records votes by Signal as refused, whatever they carry, and counts only proven ones', async () => {
    const service = newService();
    const { activities } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { production: PRODUCTION })),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, deployRequest(service, 'production', token('ci-bot')));
      await awaitingApproval(handle);
      await handle.signal(voteSignal, { decision: 'approve', credential: token('alice') });
      await handle.signal(voteSignal, { approver: 'alice', decision: 'approve', comment: 'as before' });
      const waiting = await waitFor(handle, '2 refusals', (s) => (s.approval?.refused.length ?? 0) >= 2);
      assert.equal(waiting.state, 'awaiting-approval', 'no Signal approved it');
      assert.deepEqual(waiting.approval?.votes, []);
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('bob') }],
      });
      return handle.result();
    });
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.approval?.refused.map((r) => `${r.approver}:${r.decision}:${r.via}`),
      ['undefined:approve:signal', 'alice:approve:signal'],
    );
    for (const refusal of status.approval?.refused ?? [])
      assert.match(refusal.reason, /a vote by Signal carries no proof of identity/);
    assert.deepEqual(audited(status), [
      'request:accepted:ci-bot',
      'vote:refused:(unproven)',
      'vote:refused:(unproven)',
      'vote:accepted:bob',
    ]);
    assert.match(status.audit?.[2]?.reason ?? '', /^approve by signal: a vote by Signal carries no proof/);
  });

  it('refuses requests in a freeze window unless a break-glass principal overrides it, audited', async () => {
    const [frozen, glass, intruder] = [newService(), newService(), newService()];
    const staging = {
      // Far ahead: the time-skipping server's clock may have been moved on by years when earlier tests ended.
      freezes: [{ from: '2000-01-01T00:00:00Z', until: '9999-01-01T00:00:00Z', reason: 'the big migration' }],
      breakGlass: ['group:sre'],
    };
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([frozen, glass, intruder], { staging })),
    });
    const [refusedStatus, overridden, intruded] = await withWorker(activities, (queue) =>
      Promise.all([
        start(queue, deployRequest(frozen, 'staging', token('dana', ['sre']))).then((h) => h.result()),
        start(
          queue,
          deployRequest(glass, 'staging', token('dana', ['sre']), { breakGlass: 'INC-1: checkout down' }),
        ).then((h) => h.result()),
        start(queue, deployRequest(intruder, 'staging', token('eve'), { breakGlass: 'I am in a hurry' })).then((h) =>
          h.result(),
        ),
      ]),
    );
    assert.equal(refusedStatus.state, 'invalid');
    assert.deepEqual(audited(refusedStatus), ['request:refused:dana']);
    assert.match(
      refusedStatus.audit?.[0]?.reason ?? '',
      /staging is frozen until 9999-01-01T00:00:00Z: the big migration$/,
    );

    assert.equal(overridden.state, 'succeeded');
    assert.deepEqual(audited(overridden), ['override:accepted:dana', 'request:accepted:dana']);
    assert.equal(overridden.audit?.[0]?.reason, 'dana overrode the freeze (the big migration): INC-1: checkout down');

    assert.equal(intruded.state, 'invalid');
    assert.deepEqual(audited(intruded), ['request:refused:eve']);
    assert.match(intruded.audit?.[0]?.reason ?? '', /eve may not break glass \(allowed: group:sre\)/);
    assert.equal(called(calls, 'applyRelease'), 1, 'only the override deployed');
  });

  it('deploys to an environment promoted from another only a version that succeeded there', async () => {
    const [unproven, promoted] = [newService(), newService()];
    const environments = { staging: {}, production: { promotedFrom: 'staging' } };
    const evidence = (service: string) => `${service}.staging.0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b`;
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([unproven, promoted], environments)),
      findPromotion: ({ service }) => Promise.resolve(service === promoted ? evidence(service) : undefined),
    });
    const [refusedStatus, accepted] = await withWorker(activities, async (queue) => {
      const run = async (service: string) =>
        (await start(queue, deployRequest(service, 'production', token('ci-bot')))).result();
      return Promise.all([run(unproven), run(promoted)]);
    });
    assert.equal(refusedStatus.state, 'invalid');
    assert.match(
      refusedStatus.errors.join('\n'),
      /1\.1\.0 has not been deployed successfully to staging, which production is promoted from/,
    );
    assert.deepEqual(audited(refusedStatus), ['request:refused:ci-bot']);
    assert.equal(accepted.state, 'succeeded');
    assert.deepEqual(audited(accepted), ['request:accepted:ci-bot']);
    assert.deepEqual(
      calls
        .filter((c) => c.name === 'findPromotion')
        .map((c) => c.args[0])
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { service: unproven, environment: 'staging', version: '1.1.0' },
        { service: promoted, environment: 'staging', version: '1.1.0' },
      ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
    );
  });

  it('lets only a resolver retry a failed compensation, every attempt audited', async () => {
    const service = newService();
    let restoreWorks = false;
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { staging: { resolvers: ['group:sre'] } })),
      awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
      restoreRelease: ({ to }) =>
        restoreWorks
          ? Promise.resolve(to)
          : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
    });
    const status = await withWorker(activities, async (queue) => {
      const handle = await start(queue, deployRequest(service, 'staging', token('ci-bot')));
      await waitFor(handle, 'compensation-failed', (s) => s.state === 'compensation-failed');
      await refused(
        handle.executeUpdate(resolveCompensationUpdate, {
          args: [{ action: 'abandon', credential: token('mallory', ['developers']) }],
        }),
        /mallory may not resolve deployments in staging \(resolvers: group:sre\)/,
      );
      await refused(
        handle.executeUpdate(resolveCompensationUpdate, {
          args: [{ action: 'abandon', credential: { kind: 'oidc', token: 'forged-token-0123456789' } }],
        }),
        /resolve refused: .*token signature invalid/,
      );
      assert.equal((await handle.query(statusQuery)).state, 'compensation-failed', 'nothing was decided');
      restoreWorks = true;
      const answer = await handle.executeUpdate(resolveCompensationUpdate, {
        args: [{ action: 'retry', reason: 'engine back', credential: token('dana', ['sre']) }],
      });
      assert.equal(answer, 'retry accepted from dana');
      return handle.result();
    });
    assert.equal(status.state, 'rolled-back');
    assert.deepEqual(
      status.rollback?.operatorDecisions.map((d) => `${d.action}:${d.operator}:${d.reason}`),
      ['retry:dana:engine back'],
    );
    assert.deepEqual(audited(status), [
      'request:accepted:ci-bot',
      'resolve:refused:mallory',
      'resolve:refused:(unproven)',
      'resolve:accepted:dana',
    ]);
    assert.equal(status.audit?.[3]?.reason, 'retry: engine back');
    assert.equal(status.policyHash, 'test-policy');
    assert.equal(called(calls, 'restoreRelease'), 2);
  });

  it('judges a rollback by the same policy: no promotion needed, authorization by a proven approver', async () => {
    const service = newService();
    const production = { ...PRODUCTION, promotedFrom: 'staging', rollbackRequiresApproval: true };
    const { activities, calls } = stubActivities({
      loadPolicy: stubLoadPolicy(policy([service], { staging: {}, production })),
    });
    const request: RollbackRequest = {
      spec: { service, target: 'docker', image: { repository: '127.0.0.1:5000/web' } },
      environment: 'production',
      credential: token('ci-bot'),
      reason: 'bad release',
    };
    const status = await withWorker(activities, async (taskQueue) => {
      const handle = await client.workflow.start<typeof rollbackWorkflow>('rollbackWorkflow', {
        taskQueue,
        workflowId: lockId(service, 'production'),
        args: [request],
      });
      await awaitingApproval(handle);
      await refused(
        handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('mallory') }],
        }),
        /mallory may not approve in production/,
      );
      await handle.executeUpdate(voteUpdate, {
        args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, credential: token('bob') }],
      });
      return handle.result();
    });
    assert.equal(status.kind, 'rollback');
    assert.equal(status.state, 'succeeded');
    assert.equal(called(calls, 'findPromotion'), 0);
    assert.deepEqual(audited(status), ['request:accepted:ci-bot', 'vote:refused:mallory', 'vote:accepted:bob']);
  });
});
