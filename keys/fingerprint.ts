/**
 * Keyed fingerprints: a hash that changes whenever what it covers changes (a container's configuration, secret values
 * included) but that no one without the worker's key can test guesses against, as anyone reading a history could
 * with a plain sha256 of a short password. A fingerprint names the key it was made with, so one recorded before a
 * rotation is checked again with its own key while the ring still holds it.
 */
import { createHash, createHmac } from 'node:crypto';
import { type KeyRing, keyRingFromEnv } from './key-ring.js';

const KEYED = /^hmac-sha256:([A-Za-z0-9][A-Za-z0-9._-]{0,63}):[a-f0-9]{64}$/;

let loaded: { source: string; ring: KeyRing } | undefined;

/** The worker's key ring, read once per configuration; undefined when none is configured. */
export function configuredKeyRing(env: NodeJS.ProcessEnv = process.env): KeyRing | undefined {
  const source = JSON.stringify([env.DEPLOY_AGENT_KEYS_FILE ?? '', env.DEPLOY_AGENT_KEYS ?? '']);
  if (!env.DEPLOY_AGENT_KEYS_FILE && !env.DEPLOY_AGENT_KEYS) return undefined;
  if (loaded?.source !== source) loaded = { source, ring: keyRingFromEnv(env) };
  return loaded.ring;
}

/**
 * The fingerprint of `text`: `hmac-sha256:<key id>:<hex>` with the ring's current key, or in the scheme of `like` (a
 * fingerprint recorded earlier) so the two can be compared. Without a key ring, and for fingerprints recorded before
 * keys existed, the unkeyed `sha256:<hex>`.
 */
export function fingerprint(text: string, like?: string): string {
  const ring = configuredKeyRing();
  const id = like === undefined ? ring?.currentId : KEYED.exec(like)?.[1];
  if (!ring || id === undefined) return `sha256:${createHash('sha256').update(text).digest('hex')}`;
  // A key rotated out of the ring: the current one answers, and the comparison names both ids.
  const usable = ring.key('fingerprint', id) ? id : ring.currentId;
  const key = ring.key('fingerprint', usable) as Buffer;
  return `hmac-sha256:${usable}:${createHmac('sha256', key).update(text).digest('hex')}`;
}
