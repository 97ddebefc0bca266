/**
 * Encryption of every payload Temporal stores: workflow and activity inputs and results, Signals, Updates, queries'
 * answers, memos. The whole original Payload (its metadata and data) is sealed with AES-256-GCM under the key ring's
 * current payload key, so neither the value nor its encoding is readable in a history. The sealed payload names the
 * key id in clear: after a rotation, every key still listed opens what it sealed.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { KeyRing } from '../keys/key-ring.js';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';

const PayloadMessage = proto.temporal.api.common.v1.Payload;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const text = new TextEncoder();
const fromBytes = new TextDecoder();

/** A payload that cannot be opened: its key is not (or no longer) in the ring, or it was altered. */
export class PayloadDecryptionError extends Error {
  constructor(keyId: string, why: string) {
    super(`encrypted payload with key id ${JSON.stringify(keyId)} cannot be decrypted: ${why}`);
    this.name = 'PayloadDecryptionError';
  }
}

export function isEncrypted(payload: Payload): boolean {
  const encoding = payload.metadata?.encoding;
  return encoding !== undefined && encoding !== null && fromBytes.decode(encoding) === ENCRYPTED_ENCODING;
}

export class PayloadEncryptionCodec implements PayloadCodec {
  constructor(private readonly keyRing: KeyRing) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.resolve(payloads.map((payload) => this.seal(payload)));
  }

  /** Payloads written before encryption was turned on (or by a client without it) pass through unchanged. */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.resolve(payloads.map((payload) => (isEncrypted(payload) ? this.open(payload) : payload)));
  }

  private seal(payload: Payload): Payload {
    const keyId = this.keyRing.currentId;
    const key = this.keyRing.key('payload', keyId);
    if (!key) throw new PayloadDecryptionError(keyId, 'the current key is missing from the key ring');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    // The key id is authenticated too: a payload relabelled with another id fails instead of decrypting.
    cipher.setAAD(text.encode(keyId));
    const plain = PayloadMessage.encode(payload).finish();
    const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: { encoding: text.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: text.encode(keyId) },
      data: new Uint8Array(sealed),
    };
  }

  private open(payload: Payload): Payload {
    const idBytes = payload.metadata?.[KEY_ID_METADATA];
    const keyId = idBytes ? fromBytes.decode(idBytes) : '';
    if (!keyId) throw new PayloadDecryptionError('', 'it names no key id');
    const key = this.keyRing.key('payload', keyId);
    if (!key)
      throw new PayloadDecryptionError(
        keyId,
        `the key ring holds no such key (it holds ${this.keyRing.ids.join(', ')})`,
      );
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError(keyId, 'it is too short to be one');
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
    decipher.setAAD(text.encode(keyId));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new PayloadDecryptionError(keyId, 'authentication failed (it was altered, or sealed with another key)');
    }
    const decoded = PayloadMessage.decode(plain);
    return { metadata: decoded.metadata, data: decoded.data };
  }
}
