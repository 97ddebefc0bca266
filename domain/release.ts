import { z } from 'zod';

/**
 * The proof a stored rollback point (a Kubernetes revision Secret) is the one that was taken: its name, the id of the
 * worker's key that signed it and the HMAC. Recorded in the history, so restore refuses a revision changed since.
 */
export const revisionIntegritySchema = z.object({
  revision: z.string(),
  keyId: z.string(),
  hmac: z.string(),
});
export type RevisionIntegrity = z.infer<typeof revisionIntegritySchema>;

/** What runs in an environment: enough to recognise it again, and nothing secret. */
export const releaseStateSchema = z.object({
  /** False when the service has never been deployed there: restoring means removing it. */
  present: z.boolean(),
  /** The target's own handle on this release (a container id); restore brings back exactly this one. */
  handle: z.string().optional(),
  deploymentId: z.string().optional(),
  version: z.string().optional(),
  imageDigest: z.string().optional(),
  /** sha256 of the managed configuration, so a check compares configuration without carrying its values. */
  configHash: z.string().optional(),
  running: z.boolean().default(false),
  /** Set by targets that sign their rollback points: what restore checks the stored revision against. */
  integrity: revisionIntegritySchema.optional(),
  /** Set by apply where it stopped the release before: how long that one took to stop (its grace period at most). */
  previousStopMs: z.number().optional(),
});
export type ReleaseState = z.infer<typeof releaseStateSchema>;

export const consistencyCheckSchema = z.object({
  field: z.string(),
  expected: z.string(),
  actual: z.string(),
  equal: z.boolean(),
});

/** The data-consistency verification that closes every restore: live state against the rollback point. */
export const consistencyReportSchema = z.object({
  consistent: z.boolean(),
  checks: z.array(consistencyCheckSchema),
});
export type ConsistencyReport = z.infer<typeof consistencyReportSchema>;

export const RELEASE_FIELDS = ['present', 'handle', 'imageDigest', 'configHash', 'running'] as const;
export type ReleaseField = (typeof RELEASE_FIELDS)[number];

/**
 * Field by field, the live release against the one expected. A target compares only the fields it can observe
 * live: a check whose actual value is copied from the expected one could never fail, so it is left out.
 */
export function compareReleases(
  expected: ReleaseState,
  actual: ReleaseState,
  fields: readonly ReleaseField[] = RELEASE_FIELDS,
): ConsistencyReport {
  const relevant = expected.present ? fields : (['present'] as const);
  const checks = relevant.map((field) => {
    const want = String(expected[field] ?? '-');
    const have = String(actual[field] ?? '-');
    return { field, expected: want, actual: have, equal: want === have };
  });
  return { consistent: checks.every((c) => c.equal), checks };
}

/** An image pinned by digest: what a deploy applies, never a moving tag. */
export const pinnedImageSchema = z.object({
  reference: z.string(),
  digest: z.string().regex(/^sha256:[a-f0-9]{64}$/),
});
export type PinnedImage = z.infer<typeof pinnedImageSchema>;

export const changeSetSchema = z.object({
  fromVersion: z.string().optional(),
  toVersion: z.string(),
  fromRef: z.string().optional(),
  toRef: z.string(),
  commits: z.array(z.object({ hash: z.string(), author: z.string(), date: z.string(), subject: z.string() })),
  files: z.array(z.object({ path: z.string(), change: z.string() })),
  /** Files changed in the range beyond those listed: a large range must not fill the history. */
  moreFiles: z.number().optional(),
  truncated: z.boolean(),
  note: z.string().optional(),
});
export type ChangeSet = z.infer<typeof changeSetSchema>;

/** Per-object differences between two releases, for reports: names and field paths only, never values. */
export const releaseDiffSchema = z.object({
  added: z.array(z.string()),
  removed: z.array(z.string()),
  changed: z.array(z.object({ object: z.string(), fields: z.array(z.string()) })),
  unchanged: z.number(),
});
export type ReleaseDiff = z.infer<typeof releaseDiffSchema>;
