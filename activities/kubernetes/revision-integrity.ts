/**
 * The integrity of a stored revision: an HMAC-SHA256 made with a key only the worker holds (the key ring's
 * `revision` key), over a canonical form of what restore trusts: where the revision is stored (namespace, Secret
 * name) and its content (the uncompressed JSON). Anyone with edit rights in the namespace can change the Secret;
 * without the key they cannot make a matching HMAC, and binding the name stops a valid revision being copied over
 * another one. The key id is recorded next to the HMAC, so a rotated ring still verifies revisions made before.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { KeyRing } from '../../keys/key-ring.js';
import type { RevisionIntegrity } from '../../domain/release.js';

const DOMAIN = 'deploy-agent revision v1';

export interface StoredRevision {
  namespace: string;
  name: string;
  /** The revision's JSON, exactly as stored (before compression). */
  content: string;
}

/**
 * The bytes the HMAC covers: a fixed prefix, then each part as its byte length and its bytes, so no two different
 * revisions can be read as the same sequence.
 */
export function canonicalRevision({ namespace, name, content }: StoredRevision): Buffer {
  const parts = [DOMAIN, namespace, name, content].map((part) => Buffer.from(part, 'utf8'));
  return Buffer.concat(parts.flatMap((part) => [Buffer.from(`${part.length}:`), part]));
}

export function revisionHmac(key: Buffer, revision: StoredRevision): string {
  return createHmac('sha256', key).update(canonicalRevision(revision)).digest('hex');
}

/** Signs with the ring's current key. */
export function signRevision(ring: KeyRing, revision: StoredRevision): RevisionIntegrity {
  const key = ring.key('revision') as Buffer;
  return { revision: revision.name, keyId: ring.currentId, hmac: revisionHmac(key, revision) };
}

/** Why the stored HMAC does not prove this revision, or undefined when it does. */
export function integrityProblem(
  ring: KeyRing,
  revision: StoredRevision,
  stored: { keyId?: string; hmac?: string },
): string | undefined {
  if (!stored.hmac || !stored.keyId)
    return 'it carries no HMAC (stored before revisions were signed, or the HMAC was removed)';
  const key = ring.key('revision', stored.keyId);
  if (!key) return `it was signed with key ${stored.keyId}, which the worker's key ring no longer holds`;
  const expected = Buffer.from(revisionHmac(key, revision), 'hex');
  const actual = Buffer.from(stored.hmac, 'hex');
  if (!/^[0-9a-f]{64}$/.test(stored.hmac) || !timingSafeEqual(expected, actual))
    return 'its HMAC does not verify: the Secret was altered after it was stored';
  return undefined;
}
