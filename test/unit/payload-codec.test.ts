import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import {
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  PayloadDecryptionError,
  PayloadEncryptionCodec,
} from '../../codec/payload-codec.js';
import { payloadConverter } from '../../codec/payload-converter.js';
import { KeyRing } from '../../keys/key-ring.js';

const key = () => randomBytes(32).toString('base64');
const text = (bytes: Uint8Array | null | undefined) => new TextDecoder().decode(bytes ?? new Uint8Array());
const MARKER = 'marker-value-7f3a';

function ring(current: string, keys: Record<string, string>): KeyRing {
  return new KeyRing({ current, keys });
}

describe('payload codec', () => {
  const original = defaultPayloadConverter.toPayload({ secret: MARKER, nested: [1, 2, 3] });

  it('seals the whole payload and opens it again', async () => {
    const codec = new PayloadEncryptionCodec(ring('k1', { k1: key() }));
    const [sealed] = await codec.encode([original]);
    assert.ok(sealed);
    assert.equal(text(sealed.metadata?.encoding), ENCRYPTED_ENCODING);
    assert.equal(text(sealed.metadata?.[KEY_ID_METADATA]), 'k1');
    assert.deepEqual(Object.keys(sealed.metadata ?? {}).sort(), ['encoding', KEY_ID_METADATA].sort());
    assert.ok(!Buffer.from(sealed.data ?? []).includes(MARKER), 'no plaintext in the sealed data');
    assert.ok(!Buffer.from(sealed.data ?? []).includes('json/plain'), 'not even the original encoding');
    const [opened] = await codec.decode([sealed]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(opened as Payload), { secret: MARKER, nested: [1, 2, 3] });
    assert.equal(text(opened?.metadata?.encoding), 'json/plain');
  });

  it('uses a fresh IV for every payload', async () => {
    const codec = new PayloadEncryptionCodec(ring('k1', { k1: key() }));
    const [a, b] = await codec.encode([original, original]);
    assert.notDeepEqual(Buffer.from(a?.data ?? []), Buffer.from(b?.data ?? []));
  });

  it('seals with the current key after a rotation and still opens what the old key sealed', async () => {
    const k1 = key();
    const before = new PayloadEncryptionCodec(ring('k1', { k1 }));
    const [old] = await before.encode([original]);
    const after = new PayloadEncryptionCodec(ring('k2', { k1, k2: key() }));
    const [fresh] = await after.encode([original]);
    assert.equal(text(fresh?.metadata?.[KEY_ID_METADATA]), 'k2');
    const opened = await after.decode([old as Payload, fresh as Payload]);
    for (const payload of opened)
      assert.deepEqual(defaultPayloadConverter.fromPayload(payload), { secret: MARKER, nested: [1, 2, 3] });
  });

  it('refuses a payload whose key left the ring, naming the key id and never the key', async () => {
    const k1 = key();
    const [old] = await new PayloadEncryptionCodec(ring('k1', { k1 })).encode([original]);
    const k2 = key();
    const codec = new PayloadEncryptionCodec(ring('k2', { k2 }));
    await assert.rejects(codec.decode([old as Payload]), (error: Error) => {
      assert.ok(error instanceof PayloadDecryptionError);
      assert.match(error.message, /key id "k1"/);
      assert.match(error.message, /holds k2/);
      assert.ok(!error.message.includes(k1) && !error.message.includes(k2), 'no key material in the message');
      return true;
    });
  });

  it('refuses tampered ciphertext, a relabelled key id and a payload sealed under another key of the same id', async () => {
    const k1 = key();
    const codec = new PayloadEncryptionCodec(ring('k1', { k1, k2: key() }));
    const [sealed] = await codec.encode([original]);
    const data = Buffer.from(sealed?.data ?? []);
    const flipped = Buffer.from(data);
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    const tampered = { ...sealed, data: new Uint8Array(flipped) };
    const relabelled = {
      ...sealed,
      metadata: { ...sealed?.metadata, [KEY_ID_METADATA]: new TextEncoder().encode('k2') },
    };
    const [foreign] = await new PayloadEncryptionCodec(ring('k1', { k1: key() })).encode([original]);
    for (const [what, payload, id] of [
      ['tampered', tampered, 'k1'],
      ['relabelled', relabelled, 'k2'],
      ['foreign', foreign, 'k1'],
    ] as const)
      await assert.rejects(codec.decode([payload as Payload]), (error: Error) => {
        assert.ok(error instanceof PayloadDecryptionError, what);
        assert.match(error.message, new RegExp(`key id "${id}".*authentication failed`), what);
        return true;
      });
  });

  it('passes unencrypted payloads through: histories from before the codec still decode', async () => {
    const codec = new PayloadEncryptionCodec(ring('k1', { k1: key() }));
    const binary = { metadata: { encoding: new TextEncoder().encode('binary/plain') }, data: new Uint8Array([1, 2]) };
    const none = { metadata: {}, data: new Uint8Array([3]) };
    assert.deepEqual(await codec.decode([original, binary, none]), [original, binary, none]);
  });
});

describe('tolerant payload converter', () => {
  const payload = (encoding: string, data: string): Payload => ({
    metadata: { encoding: new TextEncoder().encode(encoding) },
    data: new TextEncoder().encode(data),
  });

  it('reads and writes every readable payload as the default converter does', () => {
    for (const value of [{ a: 1, b: ['x'] }, 'text', 42, null, undefined, new Uint8Array([1, 2])]) {
      const written = payloadConverter.toPayload(value);
      assert.deepEqual(written, defaultPayloadConverter.toPayload(value));
      assert.deepEqual(payloadConverter.fromPayload(written), defaultPayloadConverter.fromPayload(written));
    }
  });

  it('turns a payload that is not JSON, or of an unknown encoding, into a value naming it', () => {
    assert.deepEqual(payloadConverter.fromPayload(payload('json/plain', '{"approver": alice}')), {
      undecodablePayload: 'a payload of encoding "json/plain" that cannot be read',
    });
    assert.deepEqual(payloadConverter.fromPayload(payload('x/unknown', 'abc')), {
      undecodablePayload: 'a payload of encoding "x/unknown" that cannot be read',
    });
  });

  it('never passes a still-encrypted payload on as a value: a process without the codec fails loudly', () => {
    assert.throws(() => payloadConverter.fromPayload(payload(ENCRYPTED_ENCODING, 'sealed')));
  });
});
