/**
 * The Kubernetes target's model: how an environment is reached, what the activities are given, and what a stored
 * revision holds. The connection schema lives with the policy it is part of; it is re-exported here so the target's
 * code has one place to import its model from.
 */
import { z } from 'zod';
import { kubernetesEnvironmentSchema } from './policy.js';

export type { KubernetesTarget } from './target.js';

/** `kubeconfig` (absolute once the worker resolved it), `context` and `namespace` of one environment. */
export const kubernetesConnectionSchema = kubernetesEnvironmentSchema;
export type KubernetesConnection = z.infer<typeof kubernetesConnectionSchema>;

/** Secret type of the stored revisions, so tools listing Secrets can tell them from application data. */
export const SNAPSHOT_SECRET_TYPE = 'deploy-agent.dev/release-snapshot';

/** One object the release manages, as it was when the revision was taken; `object` absent: it did not exist. */
export const snapshotEntrySchema = z.object({
  apiVersion: z.string(),
  kind: z.string(),
  namespace: z.string(),
  name: z.string(),
  /**
   * sha256 of the object's configuration (managed fields, less the replicas an autoscaler of the release owns);
   * "absent" when the object did not exist. Verification recomputes it from `object`.
   */
  hash: z.string(),
  object: z.record(z.string(), z.unknown()).optional(),
});
export type SnapshotEntry = z.infer<typeof snapshotEntrySchema>;

/** The content of one revision Secret (gzip-compressed JSON). It stays in the cluster: it holds Secret values. */
export const releaseSnapshotSchema = z.object({
  format: z.literal(1),
  service: z.string(),
  environment: z.string(),
  revision: z.int().min(1),
  /** The deployment that took this rollback point, before changing anything. */
  takenBy: z.string(),
  takenAt: z.string(),
  present: z.boolean(),
  running: z.boolean(),
  /** The release that was live when the revision was taken. */
  deploymentId: z.string().optional(),
  version: z.string().optional(),
  imageDigest: z.string().optional(),
  configHash: z.string(),
  entries: z.array(snapshotEntrySchema),
});
export type ReleaseSnapshot = z.infer<typeof releaseSnapshotSchema>;

export { releaseDiffSchema, type ReleaseDiff } from './release.js';
