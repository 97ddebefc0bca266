/** Activities for workflow tests on the time-skipping server: they succeed unless told otherwise, and record calls. */
import { Context } from '@temporalio/activity';
import type { Activities } from '../../activities/index.js';
import type { ReleaseState } from '../../domain/release.js';

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

export type Calls = { name: string; args: unknown[] }[];

/** Waits until the workflow cancels the activity (heartbeating so the cancellation is delivered). */
export async function untilCancelled(): Promise<never> {
  const context = Context.current();
  for (;;) {
    context.heartbeat();
    await context.sleep(100);
  }
}

export function stubActivities(overrides: Partial<Activities> = {}): { activities: Activities; calls: Calls } {
  const calls: Calls = [];
  const defaults: Activities = {
    inspectEnvironment: () =>
      Promise.resolve({ description: 'Docker 20.10, API 1.41', current: OLD_RELEASE, problems: [] }),
    resolveImage: (_target, repository) =>
      Promise.resolve({ reference: `${repository}@${NEW_DIGEST}`, digest: NEW_DIGEST }),
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
