/**
 * Payloads in the remote codec protocol's proto3 JSON: `{metadata: {key: base64}, data: base64}`. The one shape the
 * codec server reads and answers and the CLI's remote codec sends and reads back.
 */
import type { Payload } from '@temporalio/common';

export interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

/** A body that is not `{payloads: [...]}` of JSON payloads; the message names the payload at fault. */
export class PayloadJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadJsonError';
  }
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

export function payloadToJson(payload: Payload): JsonPayload {
  const base64 = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('base64');
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, bytes]) => [key, base64(bytes)])),
    data: base64(payload.data),
  };
}

export function payloadFromJson(value: unknown, index: number): Payload {
  const { metadata = {}, data = '' } = (value ?? {}) as JsonPayload;
  const texts = [data, ...Object.values(metadata ?? {})];
  if (
    typeof metadata !== 'object' ||
    metadata === null ||
    texts.some((text) => typeof text !== 'string' || !BASE64.test(text))
  )
    throw new PayloadJsonError(`payloads[${index}]: expected {metadata: {key: base64}, data: base64}`);
  const bytes = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));
  return {
    metadata: Object.fromEntries(Object.entries(metadata).map(([key, text]) => [key, bytes(text)])),
    data: bytes(data),
  };
}

/** The payloads of a parsed `{payloads: [...]}` body. */
export function payloadsFromBody(body: unknown): Payload[] {
  const payloads = (body as { payloads?: unknown } | null)?.payloads;
  if (!Array.isArray(payloads)) throw new PayloadJsonError('expected a JSON body {payloads: [...]}');
  return payloads.map((payload, index) => payloadFromJson(payload, index));
}
