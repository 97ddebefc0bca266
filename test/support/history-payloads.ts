/**
 * The payloads of a workflow history in its JSON form (as `historyToJSON` writes it: metadata values and data in
 * base64), found by shape wherever they sit: inputs, results, Signals, Updates, memos, headers, failures' details.
 */
import type { KeyRing } from '../../keys/key-ring.js';
import { PayloadEncryptionCodec } from '../../codec/payload-codec.js';

export interface JsonPayload {
  metadata: Record<string, string>;
  data?: string;
}

export interface FoundPayload {
  /** Where in the history, as a dotted path (events.12.workflowExecutionStartedEventAttributes.input.payloads.0). */
  path: string;
  payload: JsonPayload;
}

const SEARCH_ATTRIBUTES = 'searchAttributes';

/** Every payload of the history, except search attributes' values (indexed by the server, never user data). */
export function payloadsIn(json: unknown, at = ''): FoundPayload[] {
  if (Array.isArray(json)) return json.flatMap((value, index) => payloadsIn(value, `${at}${index}.`));
  if (json === null || typeof json !== 'object') return [];
  const record = json as Record<string, unknown>;
  const metadata = record.metadata;
  if (
    metadata !== null &&
    typeof metadata === 'object' &&
    typeof (metadata as Record<string, unknown>).encoding === 'string'
  )
    return [{ path: at.slice(0, -1), payload: record as unknown as JsonPayload }];
  return Object.entries(record).flatMap(([key, value]) =>
    key === SEARCH_ATTRIBUTES ? [] : payloadsIn(value, `${at}${key}.`),
  );
}

export function encodingOf(payload: JsonPayload): string {
  return Buffer.from(payload.metadata.encoding ?? '', 'base64').toString('utf8');
}

/** The payload's data as text once opened with `keyRing` (unencrypted payloads as they are). */
export async function plaintextOf(payload: JsonPayload, keyRing: KeyRing): Promise<string> {
  const bytes = (text = '') => new Uint8Array(Buffer.from(text, 'base64'));
  const [opened] = await new PayloadEncryptionCodec(keyRing).decode([
    {
      data: bytes(payload.data),
      metadata: Object.fromEntries(Object.entries(payload.metadata).map(([k, v]) => [k, bytes(v)])),
    },
  ]);
  return Buffer.from(opened?.data ?? new Uint8Array()).toString('utf8');
}
