/** Validation's last step: what the release will change, the content approvals cover and apply is held to. */
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { NON_RETRYABLE_TYPES } from '../domain/failures.js';
import type { ReleasePlan } from '../domain/plan.js';
import type { PinnedImage } from '../domain/release.js';
import type { Target } from '../domain/target.js';
import type { Runbook } from './runbook.js';

/** Patch: validation computes the release's content and plan; votes approve its hash and apply refuses any other. */
export const CONTENT_BOUND_APPROVAL = 'content-bound-approval';

const planning = proxyActivities<Activities>({
  // A Kubernetes plan dry-runs every object of the release; the validate phase's budget is the outer bound.
  startToCloseTimeout: '1m',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumAttempts: 3,
    nonRetryableErrorTypes: NON_RETRYABLE_TYPES,
  },
});

export async function planRelease(runbook: Runbook, target: Target, image: PinnedImage): Promise<ReleasePlan> {
  const plan = await planning.planRelease(target, image);
  const what = plan.unchanged ? 'nothing differs from what runs now' : 'changes listed in the plan';
  runbook.status.checks.push({ check: 'content hash', passed: true, detail: `${plan.contentHash} (${what})` });
  return plan;
}
