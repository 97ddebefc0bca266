/**
 * The one data converter of every worker and client of the project: payloads encrypted with the key ring's payload
 * keys (payload-codec.ts), read with the tolerant payload converter (payload-converter.ts).
 */
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { type KeyRing, keyRingFromEnv } from '../keys/key-ring.js';
import { PayloadEncryptionCodec } from './payload-codec.js';

/** Also given to the workflow bundler: the converter runs inside the workflow sandbox. */
export const payloadConverterPath = fileURLToPath(new URL('./payload-converter.js', import.meta.url));

/** Throws InvalidInput naming DEPLOY_AGENT_KEYS_FILE / DEPLOY_AGENT_KEYS when no key ring is given or configured. */
export function dataConverter(keyRing: KeyRing = keyRingFromEnv()): DataConverter {
  return { payloadConverterPath, payloadCodecs: [new PayloadEncryptionCodec(keyRing)] };
}
