/** Audit events: every decision about a deployment, with the proven identity behind it, when and why. */
import { z } from 'zod';

export const auditActions = ['request', 'vote', 'override', 'resolve'] as const;

export const auditEventSchema = z.object({
  at: z.string(),
  action: z.enum(auditActions),
  outcome: z.enum(['accepted', 'refused']),
  /** Who, as proven: a verified user name, or a name marked unverified in insecure development mode. */
  actor: z.string(),
  reason: z.string(),
});
export type AuditEvent = z.infer<typeof auditEventSchema>;

/** Refused attempts are kept, but bounded: a flood of hostile messages cannot grow a history without limit. */
export const MAX_REFUSED_KEPT = 50;

/** Text from a requester, bounded for records. */
export function bounded(text: string, max = 200): string {
  if (text.length <= max) return text;
  // Cut between characters, never inside one (an emoji is two UTF-16 units).
  return `${Array.from(text.slice(0, max)).slice(0, -1).join('')}…`;
}
