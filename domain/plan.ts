/**
 * What a release will change, computed at validation and shown to approvers before they vote: the hash of its
 * content (what apply will put on the target) and its changes against what runs now, by name and field path only.
 * A vote approves that hash; apply refuses content that no longer has it.
 */
import { z } from 'zod';
import { releaseDiffSchema } from './release.js';

export const contentHashSchema = z
  .string()
  .regex(/^sha256:[a-f0-9]{64}$/, { error: 'expected a content hash like sha256:<64 hex digits>' });

export const releasePlanSchema = z.object({
  /**
   * sha256 over a canonical form of the image digest and the release's configuration: Kubernetes manifests after
   * substitution, or the effective container settings (secrets by reference name only).
   */
  contentHash: contentHashSchema,
  /** Whether the image digest differs from the one running now (always true for a first deployment). */
  imageChanged: z.boolean(),
  /** Nothing at all differs from what runs now. */
  unchanged: z.boolean(),
  /** Kubernetes: objects added, removed and changed, with the changed field paths; never values. */
  objectChanges: releaseDiffSchema.optional(),
  /** Docker: the container settings that change, by name (`image`, `env.LOG_LEVEL`, `secrets.DB_PASSWORD`). */
  configChanges: z.array(z.string()),
});
export type ReleasePlan = z.infer<typeof releasePlanSchema>;

/** The plan as Markdown lines: the same text in the status, the Temporal UI's details, the vote and the report. */
export function planLines(plan: ReleasePlan): string[] {
  const lines = [`- Content hash: ${plan.contentHash}`, `- Image changed: ${plan.imageChanged ? 'yes' : 'no'}`];
  if (plan.unchanged) lines.push('- Nothing differs from what runs now');
  const objects = plan.objectChanges;
  if (objects) {
    for (const name of objects.added) lines.push(`- add ${name}`);
    for (const change of objects.changed) lines.push(`- change ${change.object}: ${change.fields.join(', ')}`);
    for (const name of objects.removed) lines.push(`- remove ${name}`);
    if (objects.unchanged) lines.push(`- ${objects.unchanged} objects unchanged`);
  }
  if (plan.configChanges.length) lines.push(`- Settings changed: ${plan.configChanges.join(', ')}`);
  return lines;
}
