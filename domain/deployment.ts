import { z } from 'zod';
import { auditEventSchema } from './audit.js';
import { InvalidInput } from './failures.js';
import { credentialSchema } from './identity.js';
import { contentHashSchema, releasePlanSchema } from './plan.js';
import { securityFindingSchema } from './security.js';
import {
  changeSetSchema,
  consistencyReportSchema,
  pinnedImageSchema,
  releaseDiffSchema,
  releaseStateSchema,
} from './release.js';

export const TASK_QUEUE = 'deploy-agent';

/** Where a deploy or rollback stands; also the value of the DeployStatus search attribute. */
export const deploymentStates = [
  'running',
  'awaiting-approval',
  'compensating',
  'compensation-failed',
  'succeeded',
  'rolled-back',
  'failed',
  'invalid',
  'unreachable',
  'rejected',
  'expired',
  'abandoned',
] as const;
export type DeploymentState = (typeof deploymentStates)[number];

export const phaseRecordSchema = z.object({
  name: z.string(),
  budgetMs: z.number().optional(),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  status: z.enum(['running', 'succeeded', 'failed', 'skipped']),
  detail: z.string().optional(),
});
export type PhaseRecord = z.infer<typeof phaseRecordSchema>;

export const decisionSchema = z.enum(['approve', 'reject']);
export type Decision = z.infer<typeof decisionSchema>;

/** A vote at an approval gate: the voter is whoever the credential proves, never a name in the payload. */
export const voteRequestSchema = z.strictObject({
  decision: decisionSchema,
  comment: z.string().max(2000).optional(),
  credential: credentialSchema,
  /**
   * The content hash of the plan the voter saw (`plan.contentHash` of the status): an approval covers that content
   * only. Votes recorded before approvals were bound to content carry none.
   */
  contentHash: contentHashSchema.optional(),
});
export type VoteRequest = z.infer<typeof voteRequestSchema>;

/** The vote of runs started before identities were proven: the approver named themselves. */
export const legacyVoteRequestSchema = z.strictObject({
  approver: z.string().min(1, { error: 'expected the approver identity' }),
  decision: decisionSchema,
  comment: z.string().max(2000).optional(),
});
export type LegacyVoteRequest = z.infer<typeof legacyVoteRequestSchema>;

export const voteSchema = z.object({
  approver: z.string(),
  decision: decisionSchema,
  comment: z.string().optional(),
  at: z.string(),
  via: z.enum(['update', 'signal']),
});
export type Vote = z.infer<typeof voteSchema>;
export const refusedVoteSchema = voteSchema.extend({ reason: z.string() });
export type RefusedVote = z.infer<typeof refusedVoteSchema>;

export const approvalRecordSchema = z.object({
  required: z.number(),
  approvers: z.array(z.string()),
  deadline: z.string().optional(),
  votes: z.array(voteSchema),
  refused: z.array(refusedVoteSchema),
});
export type ApprovalRecord = z.infer<typeof approvalRecordSchema>;

/** An operator's answer to a compensation that failed; the operator is whoever the credential proves. */
export const resolveRequestSchema = z.strictObject({
  action: z.enum(['retry', 'abandon']),
  reason: z.string().max(2000).optional(),
  credential: credentialSchema,
});
export type ResolveRequest = z.infer<typeof resolveRequestSchema>;

/** The answer of runs started before identities were proven: the operator named themselves. */
export const compensationDecisionSchema = z.strictObject({
  action: z.enum(['retry', 'abandon']),
  operator: z.string().min(1),
  reason: z.string().max(2000).optional(),
});
export type CompensationDecision = z.infer<typeof compensationDecisionSchema>;

export const rollbackReportSchema = z.object({
  reason: z.string(),
  restoredTo: releaseStateSchema,
  attempts: z.number(),
  consistency: consistencyReportSchema.optional(),
  errors: z.array(z.string()),
  operatorDecisions: z.array(compensationDecisionSchema.extend({ at: z.string() })),
});
export type RollbackReport = z.infer<typeof rollbackReportSchema>;

/**
 * Everything known about one deploy or rollback: the status query's answer while it runs, and its report once it ends.
 */
export const deploymentStatusSchema = z.object({
  deploymentId: z.string(),
  kind: z.enum(['deploy', 'rollback']),
  service: z.string(),
  environment: z.string(),
  version: z.string().optional(),
  requestedBy: z.string(),
  reason: z.string().optional(),
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  state: z.enum(deploymentStates),
  phase: z.string(),
  phases: z.array(phaseRecordSchema),
  approval: approvalRecordSchema.optional(),
  image: pinnedImageSchema.optional(),
  previous: releaseStateSchema.optional(),
  applied: releaseStateSchema.optional(),
  checks: z.array(z.object({ check: z.string(), passed: z.boolean(), detail: z.string() })),
  /** What the security rules found at validation: denied ones made the release invalid, warnings let it pass. */
  securityFindings: z.array(securityFindingSchema).optional(),
  changes: changeSetSchema.optional(),
  /** What the release changed on the target, object by object (names and field paths, never values). */
  objectChanges: releaseDiffSchema.optional(),
  /** What the release will change, computed at validation: what approvers vote on and apply is held to. */
  plan: releasePlanSchema.optional(),
  rollback: rollbackReportSchema.optional(),
  errors: z.array(z.string()),
  reportPath: z.string().optional(),
  /** sha256 of the platform policy the deployment was judged by. */
  policyHash: z.string().optional(),
  /** Set when identities were names nobody proved: the worker ran in insecure development mode. */
  unverifiedIdentities: z.boolean().optional(),
  audit: z.array(auditEventSchema).optional(),
});
export type DeploymentStatus = z.infer<typeof deploymentStatusSchema>;

const OPEN_STATES: readonly DeploymentState[] = ['running', 'awaiting-approval', 'compensating', 'compensation-failed'];
export const FINAL_STATES: ReadonlySet<DeploymentState> = new Set(
  deploymentStates.filter((s) => !OPEN_STATES.includes(s)),
);

/**
 * One deploy or rollback at a time per service and environment: the workflow id is that pair, and each run is a
 * deployment. A deployment id names the run: `<service>.<environment>.<run id>`.
 */
export function lockId(service: string, environment: string): string {
  return `${service}.${environment}`;
}

export function deploymentIdOf(workflowId: string, runId: string): string {
  return `${workflowId}.${runId}`;
}

export function parseDeploymentId(deploymentId: string): { workflowId: string; runId: string } {
  const match = /^([a-z0-9-]+\.[a-z0-9-]+)\.([0-9a-f-]{36})$/.exec(deploymentId);
  if (!match?.[1] || !match[2])
    throw new InvalidInput(`"${deploymentId}" is not a deployment id (expected <service>.<environment>.<run id>)`);
  return { workflowId: match[1], runId: match[2] };
}
