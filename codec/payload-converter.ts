/**
 * The payload converter of workers and clients (the data converter's `payloadConverterPath`): Temporal's default,
 * except that a payload it cannot read becomes a value no handler accepts instead of an exception. The SDK decodes a
 * Signal's arguments before any handler runs; without this, one Signal of bytes that are not JSON, sent with the raw
 * API, would fail every workflow task of the deployment from then on. Runs inside the workflow sandbox: no Node APIs.
 */
import {
  defaultPayloadConverter,
  type Payload,
  type PayloadConverter,
  type SerializationContext,
} from '@temporalio/common';

/** What a handler receives for a payload that could not be read: refused by every schema, like any hostile value. */
export interface UndecodablePayload {
  undecodablePayload: string;
}

// Kept in step with codec/payload-codec.ts, which the sandbox cannot import (it needs node:crypto).
const ENCRYPTED_ENCODING = 'binary/encrypted';

class TolerantPayloadConverter implements PayloadConverter {
  toPayload<T>(value: T, context?: SerializationContext): Payload {
    return defaultPayloadConverter.toPayload(value, context);
  }

  fromPayload<T>(payload: Payload, context?: SerializationContext): T {
    try {
      return defaultPayloadConverter.fromPayload<T>(payload, context);
    } catch (error) {
      const encoding = encodingOf(payload);
      // Still sealed means this process has no codec: that is a configuration error, never a value to pass on.
      if (encoding === ENCRYPTED_ENCODING) throw error;
      const undecodable: UndecodablePayload = {
        undecodablePayload: `a payload of encoding ${JSON.stringify(encoding.slice(0, 100))} that cannot be read`,
      };
      return undecodable as T;
    }
  }
}

function encodingOf(payload: Payload): string {
  const bytes = payload.metadata?.encoding;
  if (!bytes) return '(none)';
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return '(not text)';
  }
}

export const payloadConverter: PayloadConverter = new TolerantPayloadConverter();
