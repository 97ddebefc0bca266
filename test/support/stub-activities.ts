/** Activities for workflow tests on the time-skipping server: they succeed unless told otherwise, and record calls. */
import { Context } from '@temporalio/activity';
import type { Activities } from '../../activities/index.js';
import type { Identity } from '../../domain/identity.js';
import { type AdmittedPolicy, checkPolicy } from '../../domain/policy.js';
import type { ReleasePlan } from '../../domain/plan.js';
import type { ReleaseState } from '../../domain/release.js';
import { fail } from '../../domain/failures.js';

export const OLD_RELEASE: ReleaseState = {
  present: true,
  handle: 'c0ffee',
  deploymentId: 'web.production.0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  version: '1.0.0',
  imageDigest: `sha256:${'a'.repeat(64)}`,
  configHash: `sha256:${'c'.repeat(64)}`,
  running: true,
};
const NEW_DIGEST = `sha256:${'b'.repeat(64)}`;

/** The content hash the stub validation computes: an approval in a workflow test carries it. */
export const TEST_CONTENT_HASH = `sha256:${'d'.repeat(64)}`;
export const TEST_PLAN: ReleasePlan = {
  contentHash: TEST_CONTENT_HASH,
  imageChanged: true,
  unchanged: false,
  configChanges: ['image', 'env.LOG_LEVEL'],
};

export type Calls = { name: string; args: unknown[] }[];

/** Waits until the workflow cancels the activity (heartbeating so the cancellation is delivered). */
export async function untilCancelled(): Promise<never> {
  const context = Context.current();
  for (;;) {
    context.heartbeat();
    await context.sleep(100);
  }
}

/**
 * The policy workflow tests run under, unless a test gives its own: staging is open, production protected. Each of
 * `services` gets its docker ports, so tests can keep one lock (`<service>.<environment>`) each.
 */
export function testPolicy(
  budgets: Record<string, string> = {},
  services: readonly string[] = ['web'],
): Record<string, unknown> {
  const ports = (port: number) => Object.fromEntries(services.map((service) => [service, port]));
  return {
    identity: { insecureDevMode: true },
    environments: {
      staging: { docker: { host: 'unix:///stub.sock', ports: ports(18080) }, budgets },
      production: {
        protected: true,
        deployers: ['ci-bot'],
        docker: { host: 'unix:///stub.sock', ports: ports(18081) },
        approval: { required: 1, approvers: ['alice', 'bob', 'group:release-managers'], deadline: '24h' },
        rollbackRequiresApproval: true,
        budgets,
      },
    },
  };
}

/**
 * Stub verification for workflow logic: an insecure-dev credential is its name; an oidc "token" written
 * `test:<user>:<group>,<group>:<jti>` stands for a verified token of that user, groups and id, and `forged` is refused.
 */
export function stubVerifyCredential({ credential }: { credential: { kind: string; token?: string; user?: string } }) {
  if (credential.kind === 'insecure-dev')
    return Promise.resolve<Identity>({ user: credential.user ?? '', groups: [], proof: 'insecure-dev' });
  const [scheme, user, groups, tokenId] = (credential.token ?? '').split(':');
  if (scheme !== 'test' || !user) return Promise.reject(fail('forbidden', 'token signature invalid'));
  return Promise.resolve<Identity>({
    user,
    groups: groups ? groups.split(',') : [],
    proof: 'oidc',
    tokenId,
    issuedAt: new Date().toISOString(),
  });
}

/**
 * Like stubVerifyCredential, but as strict as the real verification about the mode: an insecure-dev credential is
 * refused unless the policy's identity settings turn that mode on.
 */
export function stubVerifyCredentialStrictly(input: {
  credential: { kind: string; token?: string; user?: string };
  settings?: { insecureDevMode?: boolean };
}): Promise<Identity> {
  if (input.credential.kind === 'insecure-dev' && input.settings?.insecureDevMode !== true)
    return Promise.reject(fail('forbidden', 'insecure-dev credentials are refused: the policy requires tokens'));
  return stubVerifyCredential(input);
}

/** A stub oidc token (see stubVerifyCredential), long enough for the credential schema whatever the names. */
export function testToken(user: string, groups: readonly string[] = [], jti = `jti-${user}-0000`): string {
  return `test:${user}:${groups.join(',')}:${jti}`;
}

/** loadPolicy for a policy document: the environment's part, as the real activity answers. */
export function stubLoadPolicy(document: Record<string, unknown>) {
  return ({ environment }: { environment: string }): Promise<AdmittedPolicy> => {
    const { value, problems } = checkPolicy(document);
    if (!value) return Promise.reject(new Error(`test policy invalid: ${JSON.stringify(problems)}`));
    const settings = value.environments[environment];
    if (!settings)
      return Promise.reject(fail('invalid', `environment ${environment} is not defined by the platform policy`));
    return Promise.resolve({ hash: 'test-policy', environment: settings, identity: value.identity });
  };
}

export function stubActivities(overrides: Partial<Activities> = {}): { activities: Activities; calls: Calls } {
  const calls: Calls = [];
  const defaults: Activities = {
    loadPolicy: stubLoadPolicy(testPolicy()),
    verifyCredential: stubVerifyCredential,
    findPromotion: () => Promise.resolve(undefined),
    inspectEnvironment: () =>
      Promise.resolve({ description: 'Docker 20.10, API 1.41', current: OLD_RELEASE, problems: [] }),
    resolveImage: (_target, repository) =>
      Promise.resolve({ reference: `${repository}@${NEW_DIGEST}`, digest: NEW_DIGEST }),
    checkSecurity: () => Promise.resolve([]),
    snapshotRelease: () => Promise.resolve(OLD_RELEASE),
    applyRelease: ({ deploymentId, version }) =>
      Promise.resolve({ ...OLD_RELEASE, handle: 'beef', deploymentId, version, imageDigest: NEW_DIGEST }),
    pruneHistory: () => Promise.resolve([]),
    findKeptRelease: () => Promise.resolve(OLD_RELEASE),
    restoreRelease: ({ to }) => Promise.resolve(to),
    verifyRelease: (_target, expected) =>
      Promise.resolve({
        consistent: true,
        checks: [
          {
            field: 'imageDigest',
            expected: expected.imageDigest ?? '-',
            actual: expected.imageDigest ?? '-',
            equal: true,
          },
        ],
      }),
    awaitReady: () => Promise.resolve('healthy'),
    dryRunRelease: () => Promise.resolve([]),
    planRelease: () => Promise.resolve(TEST_PLAN),
    diffRelease: () => Promise.resolve({ added: [], removed: [], changed: [], unchanged: 1 }),
    trackChanges: ({ toVersion }) =>
      Promise.resolve({ toVersion, toRef: `v${toVersion}`, commits: [], files: [], truncated: false }),
    publishReport: (status) => Promise.resolve(`reports/${status.deploymentId}.md`),
  };
  const merged = { ...defaults, ...overrides };
  const recorded = Object.fromEntries(
    Object.entries(merged).map(([name, fn]) => [
      name,
      (...args: unknown[]) => {
        calls.push({ name, args });
        return (fn as (...a: unknown[]) => unknown)(...args);
      },
    ]),
  ) as unknown as Activities;
  return { activities: recorded, calls };
}

export const called = (calls: Calls, name: string) => calls.filter((c) => c.name === name).length;
