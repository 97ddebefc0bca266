/**
 * Hostile messages on the time-skipping server: anyone who can reach Temporal can send a deployment any payload.
 * Thousands of random and crafted ones, generated from a fixed seed so every run sends the same, must each be refused
 * or recorded as refused, without failing a workflow task, growing the status without bound or counting as a decision;
 * afterwards a real vote or resolve still works.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { type Client, type WorkflowHandle, WorkflowUpdateFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import type { Activities } from '../../activities/index.js';
import { MAX_REFUSED_KEPT } from '../../domain/audit.js';
import { type DeploymentStatus, lockId } from '../../domain/deployment.js';
import { isNamed } from '../../domain/identity.js';
import type { DeployRequest } from '../../domain/requests.js';
import type { deployWorkflow } from '../../workflows/index.js';
import { resolveCompensationUpdate, statusQuery, voteSignal, voteUpdate } from '../../workflows/messages.js';
import {
  called,
  stubActivities,
  stubLoadPolicy,
  stubVerifyCredentialStrictly,
  testToken,
  TEST_CONTENT_HASH,
} from '../support/stub-activities.js';
import { runTestWorker, startTimeSkippingServer, testDataConverter, workflowBundle } from '../support/temporal.js';

let env: TestWorkflowEnvironment;
let client: Client;
let sequence = 0;

/** Who may decide anything in the policy below: no generated payload may prove one of them. */
const DECIDERS = ['alice', 'bob', 'group:release-managers', 'group:sre'];

function hostilePolicy(service: string): Record<string, unknown> {
  const docker = { host: 'unix:///stub.sock', ports: { [service]: 18080 } };
  return {
    identity: { oidc: { issuer: 'https://sso.example.com/realms/platform', audience: 'deploy-agent' } },
    environments: {
      staging: { docker, deployers: ['ci-bot'], resolvers: ['group:sre'] },
      production: {
        protected: true,
        docker,
        deployers: ['ci-bot'],
        approval: { required: 1, approvers: ['alice', 'bob', 'group:release-managers'], deadline: '24h' },
      },
    },
  };
}

const proven = (user: string, groups: string[], jti: string) => ({
  kind: 'oidc' as const,
  token: testToken(user, groups, jti),
});

// --- payloads -------------------------------------------------------------------------------------------------

type Random = () => number;

/** mulberry32: a small seeded PRNG, so a failure names a payload that the next run sends again. */
function seeded(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const int = (r: Random, n: number) => Math.floor(r() * n);
const pick = <T>(r: Random, items: readonly T[]): T => items[int(r, items.length)] as T;
const chance = (r: Random, p: number) => r() < p;

const STRANGE_TEXT = [
  '',
  ' ',
  'approve',
  'APPROVE',
  'approve ',
  'reject',
  'retry',
  'abandon',
  'alice',
  'bob',
  '\u0000',
  '\uD800',
  '\uDFFF\uD800',
  '\u202Eevorppa',
  'a\u200Bpprove',
  'e\u0301',
  '👍🏽👩‍👩‍👧',
  'Ω≈ç√∫˜µ≤',
  '%s%n%x',
  '${process.exit()}',
  '{{constructor.constructor("return process")()}}',
  '<script>alert(1)</script>',
  "'; DROP TABLE votes; --",
  '../../../etc/passwd',
  '\r\nX-Injected: 1\r\n',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
];
const HOSTILE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  'toJSON',
  'then',
  'length',
  'decision',
  'approver',
  'credential',
  'comment',
  'action',
  'operator',
  'reason',
  'kind',
  'token',
  'user',
];
const USERS = [
  'mallory',
  'eve',
  'trudy',
  'ci-bot',
  'root',
  'admin',
  'Alice',
  'alice ',
  ' bob',
  'BOB',
  'alice\u0000',
  '*',
];
const GROUPS = [
  'developers',
  'Release-Managers',
  'release-managers ',
  '//release-managers',
  'release_managers',
  'SRE',
  '*',
];

function randomText(r: Random, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += String.fromCharCode(int(r, 0x10000));
  return text;
}

function text(r: Random): string {
  return chance(r, 0.3) ? randomText(r, int(r, 300)) : pick(r, STRANGE_TEXT);
}

/** About 100 KB of text, of three kinds: plain, astral (surrogate pairs), random code units. */
function huge(r: Random): string {
  return pick(r, [() => 'A'.repeat(100_000), () => '👍'.repeat(25_000), () => randomText(r, 35_000)])();
}

function number(r: Random): number {
  return pick(r, [0, -0, -1, 1, 1e308, -1e-308, 2 ** 53 + 1, Number.NaN, Infinity, int(r, 1_000_000) - 500_000]);
}

/** An object with exactly these own keys, `__proto__` included, as JSON.parse makes them in the workflow. */
function withKeys(entries: [string, unknown][]): Record<string, unknown> {
  return Object.fromEntries(entries);
}

function value(r: Random, depth = 0): unknown {
  const kind = int(r, depth > 3 ? 5 : 8);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return chance(r, 0.5);
    case 2:
      return number(r);
    case 3:
    case 4:
      return text(r);
    case 5:
      return Array.from({ length: int(r, 6) }, () => value(r, depth + 1));
    case 6:
      return withKeys(Array.from({ length: 1 + int(r, 5) }, () => [pick(r, HOSTILE_KEYS), value(r, depth + 1)]));
    default:
      return deep(r, 10 + int(r, 50));
  }
}

function deep(r: Random, levels: number): unknown {
  let nested: unknown = text(r);
  for (let i = 0; i < levels; i++) nested = chance(r, 0.5) ? [nested] : withKeys([[pick(r, HOSTILE_KEYS), nested]]);
  return nested;
}

/** What the stub verification would prove from a credential: used only to keep generated ones from deciding. */
function provesADecider(credential: unknown): boolean {
  const { kind, token } = (typeof credential === 'object' && credential !== null ? credential : {}) as {
    kind?: unknown;
    token?: unknown;
  };
  if (kind !== 'oidc' || typeof token !== 'string') return false;
  const [scheme, user, groups] = token.split(':');
  if (scheme !== 'test' || !user) return false;
  return isNamed({ user, groups: groups ? groups.split(',') : [], proof: 'oidc' }, DECIDERS);
}

function forgedJwt(r: Random): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = b64(pick(r, [{ alg: 'none' }, { alg: 'HS256', typ: 'JWT' }, { alg: 'RS256', kid: '../../keys' }]));
  const claims = b64({
    sub: pick(r, ['alice', 'bob']),
    preferred_username: 'alice',
    groups: ['release-managers', 'sre'],
  });
  return `${header}.${claims}.${chance(r, 0.5) ? '' : randomText(r, 40)}`;
}

function credential(r: Random): unknown {
  const jti = `jti-${int(r, 1_000_000_000)}`;
  const made = pick(r, [
    () => ({ kind: 'oidc', token: forgedJwt(r) }),
    () => proven(pick(r, USERS), chance(r, 0.5) ? [pick(r, GROUPS)] : [], jti),
    () => proven(text(r).replaceAll(':', ''), [text(r).replace(/[:,]/g, '')], jti),
    () => ({ kind: 'oidc', token: `test:mallory::${'j'.repeat(16_000)}` }),
    () => ({ kind: 'oidc', token: 'short' }),
    () => ({ kind: 'oidc', token: `test:mallory::${'j'.repeat(int(r, 2) ? 16_384 - 14 : 16_385 - 14)}` }),
    () => ({ kind: 'insecure-dev', user: pick(r, ['alice', 'bob', 'ci-bot', text(r)]) }),
    () => ({ kind: 'oidc', user: 'alice' }),
    () => ({ kind: 'insecure-dev', token: testToken('alice', [], jti) }),
    () => ({ kind: 'OIDC', token: testToken('alice', [], jti) }),
    () => ({ kind: ['oidc'], token: testToken('bob', [], jti) }),
    () => ({ kind: 'saml', assertion: text(r) }),
    () => withKeys([['__proto__', { kind: 'oidc', token: testToken('alice', [], jti) }]]),
    () =>
      withKeys([
        ['kind', 'oidc'],
        ['token', forgedJwt(r)],
        ['constructor', { prototype: { user: 'alice' } }],
      ]),
    () => value(r),
  ])();
  return provesADecider(made) ? { kind: 'oidc', token: forgedJwt(r) } : made;
}

/** A credential the schema accepts, proving nobody who may decide (or nobody at all). */
function wellFormedCredential(r: Random): unknown {
  const jti = `jti-${int(r, 1_000_000_000)}`;
  const made = pick(r, [
    () => ({ kind: 'oidc', token: forgedJwt(r) }),
    () => proven(pick(r, USERS), chance(r, 0.5) ? [pick(r, GROUPS)] : [], jti),
    () => proven(text(r).replace(/[:\s]/g, '') || 'x', [text(r).replace(/[:,]/g, '')], `${jti}-padding`),
    () => ({ kind: 'oidc', token: `test:mallory::${'j'.repeat(16_384 - 14)}` }),
    () => ({ kind: 'insecure-dev', user: pick(r, ['alice', 'bob', 'ci-bot', 'dana']) }),
  ])();
  return provesADecider(made) ? { kind: 'oidc', token: forgedJwt(r) } : made;
}

function vote(r: Random): unknown {
  // Half are well-formed, so that they reach the handler and its verification; half break the schema somewhere.
  if (chance(r, 0.5)) {
    const fields: [string, unknown][] = [
      ['decision', pick(r, ['approve', 'reject'])],
      ['credential', wellFormedCredential(r)],
    ];
    if (chance(r, 0.5)) fields.push(['comment', chance(r, 0.1) ? 'c'.repeat(2_000) : text(r)]);
    return withKeys(fields);
  }
  const fields: [string, unknown][] = [
    ['decision', chance(r, 0.8) ? pick(r, ['approve', 'reject']) : value(r)],
    ['credential', credential(r)],
  ];
  if (chance(r, 0.4)) fields.push(['comment', chance(r, 0.1) ? 'c'.repeat(1_999 + int(r, 3)) : text(r)]);
  if (chance(r, 0.15)) fields.push([pick(r, HOSTILE_KEYS), value(r)]);
  if (chance(r, 0.15)) fields.push(['approver', pick(r, ['alice', 'bob', text(r)])]);
  return withKeys(fields);
}

function resolve(r: Random): unknown {
  if (chance(r, 0.5))
    return withKeys([
      ['action', pick(r, ['retry', 'abandon'])],
      ['credential', wellFormedCredential(r)],
    ]);
  const fields: [string, unknown][] = [
    ['action', chance(r, 0.8) ? pick(r, ['retry', 'abandon']) : value(r)],
    chance(r, 0.8) ? ['credential', credential(r)] : ['operator', pick(r, ['alice', 'dana', text(r)])],
  ];
  if (chance(r, 0.4)) fields.push(['reason', chance(r, 0.1) ? 'r'.repeat(1_999 + int(r, 3)) : text(r)]);
  if (chance(r, 0.1)) fields.push([pick(r, HOSTILE_KEYS), value(r)]);
  return withKeys(fields);
}

/** One hostile payload: mostly shaped like a vote or resolve, else anything JSON can carry. */
function payload(r: Random): unknown {
  // Rare, as a Signal's payload stays in history: enough of them to try every field, not to bloat it.
  if (chance(r, 0.01))
    return pick(r, [
      () => huge(r),
      () =>
        withKeys([
          ['decision', 'approve'],
          ['comment', huge(r)],
          ['credential', credential(r)],
        ]),
      () =>
        withKeys([
          ['decision', 'approve'],
          ['credential', { kind: 'oidc', token: huge(r) }],
        ]),
      () =>
        withKeys([
          ['approver', huge(r)],
          ['decision', 'approve'],
        ]),
      () =>
        withKeys([
          ['action', 'abandon'],
          ['reason', huge(r)],
          ['credential', credential(r)],
        ]),
    ])();
  return pick(r, [
    vote,
    vote,
    vote,
    resolve,
    (r: Random) =>
      withKeys([
        ['approver', value(r)],
        ['decision', pick(r, ['approve', 'reject', value(r)])],
      ]),
    (r: Random) => value(r),
    (r: Random) => value(r),
    (r: Random) => Array.from({ length: int(r, 20) }, () => value(r)),
    (r: Random) => deep(r, 300 + int(r, 1_200)),
    (r: Random) =>
      withKeys([
        ['decision', 'approve'],
        ['credential', deep(r, 200 + int(r, 800))],
      ]),
    () => withKeys([['__proto__', { decision: 'approve', approver: 'alice', polluted: true }]]),
    () => withKeys([['constructor', { prototype: { decision: 'approve', approved: true } }]]),
  ])(r);
}

/**
 * Crafted payloads every run sends on every channel, whatever the seed: the size limits, prototype-pollution shapes
 * that hide an approver's real token where only careless code would find it, look-alike names, the requester.
 */
function crafted(): unknown[] {
  const forged = 'eyJhbGciOiJub25lIn0.eyJwcmVmZXJyZWRfdXNlcm5hbWUiOiJhbGljZSJ9.';
  const aliceToken = { kind: 'oidc', token: testToken('alice', [], 'hidden-in-a-prototype') };
  let nested: unknown = 'bottom';
  // As deep as the client's own JSON encoding goes, with room for the frames around it.
  for (let i = 0; i < 2_000; i++) nested = [nested];
  return [
    'A'.repeat(100_000),
    withKeys([
      ['decision', 'approve'],
      ['comment', 'x'.repeat(100_000)],
      ['credential', { kind: 'oidc', token: forged }],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['credential', { kind: 'oidc', token: `test:mallory::${'j'.repeat(100_000)}` }],
    ]),
    withKeys([
      ['approver', 'a'.repeat(100_000)],
      ['decision', 'approve'],
    ]),
    withKeys([
      ['action', 'abandon'],
      ['reason', 'r'.repeat(100_000)],
      ['credential', { kind: 'insecure-dev', user: 'alice' }],
    ]),
    null,
    0,
    [],
    'approve',
    nested,
    withKeys([
      [
        '__proto__',
        withKeys([
          ['decision', 'approve'],
          ['credential', aliceToken],
        ]),
      ],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['__proto__', withKeys([['credential', aliceToken]])],
    ]),
    withKeys([
      ['action', 'abandon'],
      ['__proto__', withKeys([['credential', aliceToken]])],
    ]),
    withKeys([
      ['constructor', { prototype: { decision: 'approve', credential: aliceToken } }],
      ['decision', 'approve'],
      ['credential', { kind: 'oidc', token: forged }],
    ]),
    withKeys([
      ['decision', 'approve'],
      [
        'credential',
        withKeys([...Object.entries(proven('mallory', [], 'jti-extra-key-00')), ['__proto__', aliceToken]]),
      ],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['credential', proven('ci-bot', ['release-managers'], 'requester-approves')],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['credential', proven('\u0430lice', [], 'homoglyph-jti-0001')],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['credential', proven('mallory', ['/release-managers/'], 'slashes-jti-0001')],
    ]),
    withKeys([
      ['decision', 'approve'],
      ['comment', '\u202E\u0000\uD800'],
      ['credential', { kind: 'oidc', token: 1234567890123456 }],
    ]),
    withKeys([
      ['approver', 'alice'],
      ['decision', 'approve'],
      ['comment', 'lgtm'],
    ]),
    withKeys([
      ['approver', { toString: 'alice', valueOf: 'alice' }],
      ['decision', { toString: 'approve' }],
      ['credential', { kind: { toString: 'oidc' }, token: forged }],
    ]),
  ];
}

type Channel = 'vote' | 'vote-signal' | 'resolve-compensation';

interface Outcome {
  sent: number;
  /** Updates refused with an answer (WorkflowUpdateFailedError). */
  refused: number;
  /** Anything else: an Update accepted, an error without an answer, a timeout. Each is a finding. */
  unexpected: string[];
}

/** Sends every message, `limit` at a time; an Update must be answered, and answered with a refusal. */
async function flood(
  handle: WorkflowHandle,
  messages: { channel: Channel; payload: unknown }[],
  limit = 16,
): Promise<Record<Channel, Outcome>> {
  const outcomes = Object.fromEntries(
    (['vote', 'vote-signal', 'resolve-compensation'] as const).map((c) => [c, { sent: 0, refused: 0, unexpected: [] }]),
  ) as unknown as Record<Channel, Outcome>;
  const describe = (payload: unknown) => {
    try {
      return (JSON.stringify(payload) ?? String(payload)).slice(0, 300);
    } catch (error) {
      return `(${typeof payload} the test cannot print: ${String(error)})`;
    }
  };
  let next = 0;
  const send = async ({ channel, payload }: { channel: Channel; payload: unknown }) => {
    const outcome = outcomes[channel];
    outcome.sent += 1;
    if (channel === 'vote-signal') return handle.signal(voteSignal, payload);
    // By name: the payload is anything, not what either Update's type says.
    const update = channel === 'vote' ? voteUpdate.name : resolveCompensationUpdate.name;
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      handle.executeUpdate(update, { args: [payload] }).then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      new Promise<{ timeout: true }>((resolve) => (timer = setTimeout(() => resolve({ timeout: true }), 30_000))),
    ]);
    clearTimeout(timer);
    if ('error' in answer && answer.error instanceof WorkflowUpdateFailedError) outcome.refused += 1;
    else outcome.unexpected.push(`${channel} ${JSON.stringify(answer).slice(0, 300)} for ${describe(payload)}`);
  };
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < messages.length) await send(messages[next++]!);
    }),
  );
  return outcomes;
}

// --- the tests ------------------------------------------------------------------------------------------------

function withWorker<T>(activities: Activities, work: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `hostile-${sequence}-${Date.now()}`;
  return runTestWorker({ connection: env.nativeConnection, taskQueue, activities }, () => work(taskQueue));
}

async function waitFor(handle: WorkflowHandle, state: DeploymentStatus['state']): Promise<DeploymentStatus> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const status = await handle.query(statusQuery);
    if (status.state === state) return status;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`state ${state} not reached`);
}

function setup(environment: 'staging' | 'production', overrides: Partial<Activities> = {}) {
  const service = `hostile-${++sequence}`;
  const request: DeployRequest = {
    spec: { service, target: 'docker', image: { repository: '127.0.0.1:5000/web' } },
    environment,
    version: '1.1.0',
    credential: { kind: 'oidc', token: testToken('ci-bot', ['ci'], 'request-jti-0001') },
  };
  const stubs = stubActivities({
    loadPolicy: stubLoadPolicy(hostilePolicy(service)),
    verifyCredential: stubVerifyCredentialStrictly,
    ...overrides,
  });
  return { ...stubs, request, workflowId: lockId(service, environment) };
}

/** What must hold of a status however many hostile messages it was sent. */
function assertBounded(status: DeploymentStatus): void {
  const refused = status.approval?.refused ?? [];
  assert.ok(refused.length <= MAX_REFUSED_KEPT, `${refused.length} refused votes kept`);
  for (const r of refused) {
    assert.ok(r.approver.length <= 200, `approver of ${r.approver.length} characters`);
    assert.ok(r.reason.length <= 500, `reason of ${r.reason.length} characters`);
    assert.ok((r.comment?.length ?? 0) <= 2_000, `comment of ${r.comment?.length} characters`);
  }
  const audit = status.audit ?? [];
  assert.ok(audit.filter((e) => e.outcome === 'refused').length <= MAX_REFUSED_KEPT, 'refused audit events bounded');
  for (const e of audit) {
    assert.ok(e.actor.length <= 200, `audit actor of ${e.actor.length} characters`);
    assert.ok(e.reason.length <= 500, `audit reason of ${e.reason.length} characters`);
  }
  // Far below the 2 MB a payload may have: the status is every query's answer and the workflow's result.
  assert.ok(JSON.stringify(status).length < 512 * 1024, `status of ${JSON.stringify(status).length} characters`);
}

async function assertNoTaskFailed(handle: WorkflowHandle): Promise<void> {
  const history = await handle.fetchHistory();
  const failed = (history.events ?? []).filter((e) => e.workflowTaskFailedEventAttributes);
  assert.deepEqual(
    failed.map((e) => e.workflowTaskFailedEventAttributes?.failure?.message),
    [],
    'no workflow task failed',
  );
  await Worker.runReplayHistory(
    { workflowBundle: await workflowBundle(), dataConverter: testDataConverter() },
    history,
    handle.workflowId,
  );
}

describe('hostile messages (time-skipping server)', { timeout: 600_000 }, () => {
  before(async () => {
    ({ env, client } = await startTimeSkippingServer());
  });
  after(async () => env?.teardown());

  it(
    'refuses more than 1,200 crafted, random and hostile votes, Signals and resolves at the approval gate, then counts a real vote',
    { timeout: 180_000 },
    async () => {
      const random = seeded(20_261_202);
      const channels = ['vote', 'vote-signal', 'resolve-compensation'] as const;
      const messages = [
        ...crafted().flatMap((payload) => channels.map((channel) => ({ channel, payload }))),
        ...Array.from({ length: 1_200 }, () => ({
          channel: pick(random, ['vote', 'vote', 'vote-signal', 'vote-signal', 'resolve-compensation'] as const),
          payload: payload(random),
        })),
      ];
      const test = setup('production');
      const wallStart = Date.now();
      const { status, outcomes } = await withWorker(test.activities, async (taskQueue) => {
        const handle = await client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
          taskQueue,
          workflowId: test.workflowId,
          args: [test.request],
        });
        await waitFor(handle, 'awaiting-approval');
        const outcomes = await flood(handle, messages);

        const flooded = await handle.query(statusQuery);
        assert.equal(flooded.state, 'awaiting-approval', 'still waiting at its gate');
        assert.deepEqual(flooded.approval?.votes, [], 'no hostile vote was counted');
        assert.equal(flooded.approval?.refused.length, MAX_REFUSED_KEPT, 'refusals are kept up to the cap');
        assertBounded(flooded);
        await assertNoTaskFailed(handle);

        const final = { kind: 'oidc' as const, token: testToken('alice', [], 'final-approval-jti') };
        await handle.executeUpdate(voteUpdate, {
          args: [{ decision: 'approve', contentHash: TEST_CONTENT_HASH, comment: 'real', credential: final }],
        });
        return { status: await handle.result(), outcomes };
      });
      process.stdout.write(`# ${messages.length} hostile messages in ${Date.now() - wallStart} ms\n`);

      for (const [channel, outcome] of Object.entries(outcomes))
        assert.deepEqual(outcome.unexpected, [], `${channel}: every Update refused with an answer`);
      const sent = Object.values(outcomes).reduce((sum, o) => sum + o.sent, 0);
      assert.equal(sent, messages.length);
      assert.ok(sent >= 1_000, `${sent} sent`);
      for (const channel of ['vote', 'vote-signal', 'resolve-compensation'] as const)
        assert.ok(outcomes[channel].sent >= 150, `${channel}: ${outcomes[channel].sent} sent`);
      assert.equal(outcomes.vote.refused, outcomes.vote.sent);
      assert.equal(outcomes['resolve-compensation'].refused, outcomes['resolve-compensation'].sent);

      assert.equal(status.state, 'succeeded');
      assert.deepEqual(
        status.approval?.votes.map((v) => `${v.approver}:${v.decision}:${v.via}`),
        ['alice:approve:update'],
      );
      assert.ok(
        status.audit?.some((e) => e.action === 'vote' && e.outcome === 'accepted' && e.actor === 'alice'),
        'the real vote is audited although the refused ones reached their cap',
      );
      assertBounded(status);
      assert.equal(called(test.calls, 'applyRelease'), 1);
    },
  );

  it(
    'refuses 400 random and hostile resolves of a failed compensation, then accepts a real resolver',
    { timeout: 120_000 },
    async () => {
      const random = seeded(4_242);
      const messages = Array.from({ length: 400 }, () => ({
        channel: 'resolve-compensation' as const,
        payload: chance(random, 0.6) ? resolve(random) : payload(random),
      }));
      let restoreWorks = false;
      const test = setup('staging', {
        awaitReady: () => Promise.reject(ApplicationFailure.nonRetryable('HTTP 500 from /health', 'Unhealthy')),
        restoreRelease: ({ to }) =>
          restoreWorks
            ? Promise.resolve(to)
            : Promise.reject(ApplicationFailure.nonRetryable('engine lost the container', 'InvalidRelease')),
      });
      const { status, outcomes } = await withWorker(test.activities, async (taskQueue) => {
        const handle = await client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
          taskQueue,
          workflowId: test.workflowId,
          args: [test.request],
        });
        await waitFor(handle, 'compensation-failed');
        const outcomes = await flood(handle, messages);
        const flooded = await handle.query(statusQuery);
        assert.equal(flooded.state, 'compensation-failed', 'still waiting for a resolver');
        assert.deepEqual(flooded.rollback?.operatorDecisions, []);
        assertBounded(flooded);
        await assertNoTaskFailed(handle);

        restoreWorks = true;
        await handle.executeUpdate(resolveCompensationUpdate, {
          args: [{ action: 'retry', credential: proven('dana', ['sre'], 'real-resolve-jti') }],
        });
        return { status: await handle.result(), outcomes };
      });
      assert.deepEqual(outcomes['resolve-compensation'].unexpected, []);
      assert.equal(outcomes['resolve-compensation'].refused, 400);
      assert.equal(status.state, 'rolled-back');
      assert.deepEqual(
        status.rollback?.operatorDecisions.map((d) => `${d.action}:${d.operator}`),
        ['retry:dana'],
      );
      assertBounded(status);
    },
  );

  it(
    'records a Signal vote whose payload is not JSON at all as refused, instead of failing workflow tasks',
    // The SDK decodes a Signal before any handler runs: the tolerant payload converter (codec/payload-converter.ts)
    // hands the handler a value it refuses, where the default converter's exception failed every workflow task.
    { timeout: 60_000 },
    async () => {
      const test = setup('production');
      await withWorker(test.activities, async (taskQueue) => {
        const handle = await client.workflow.start<typeof deployWorkflow>('deployWorkflow', {
          taskQueue,
          workflowId: test.workflowId,
          args: [test.request],
        });
        try {
          await waitFor(handle, 'awaiting-approval');
          const bytes = (text: string) => new TextEncoder().encode(text);
          await client.workflowService.signalWorkflowExecution({
            namespace: client.options.namespace,
            workflowExecution: { workflowId: handle.workflowId },
            signalName: voteSignal.name,
            input: { payloads: [{ metadata: { encoding: bytes('json/plain') }, data: bytes('{"approver": alice}') }] },
            identity: 'hostile-raw-client',
          });
          let events = (await handle.fetchHistory()).events ?? [];
          const signalled = events.findIndex((e) => e.workflowExecutionSignaledEventAttributes);
          for (let attempt = 0; attempt < 60; attempt++) {
            events = (await handle.fetchHistory()).events ?? [];
            if (
              events
                .slice(signalled)
                .some((e) => e.workflowTaskCompletedEventAttributes || e.workflowTaskFailedEventAttributes)
            )
              break;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          assert.deepEqual(
            events.flatMap((e) => e.workflowTaskFailedEventAttributes?.failure?.message ?? []),
            [],
            'no workflow task failed',
          );
          const refused = (await handle.query(statusQuery)).approval?.refused ?? [];
          assert.deepEqual(
            refused.map((r) => r.via),
            ['signal'],
            'the undecodable Signal is recorded as a refused vote',
          );
          await assertNoTaskFailed(handle);
        } finally {
          // A deployment whose tasks fail would wait here for ever: this one ends with the test.
          await handle.terminate().catch(() => undefined);
        }
      });
    },
  );
});
