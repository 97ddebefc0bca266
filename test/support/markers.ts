/**
 * Marker secrets and the search for them: a test gives secrets unique random values, runs its scenarios, then looks
 * for every value, in plain text and base64, in whatever the system wrote (histories, status, reports, logs). A hit
 * is a leak. Histories are searched with their payloads decoded, through the payload codecs of a data converter when
 * one is given, so the search still reads what an encrypted history holds.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { DataConverter, Payload } from '@temporalio/common';

/** A value found nowhere else: a leak of it cannot be a coincidence. */
export const newMarker = (name: string): string => `${name}-marker-${randomBytes(16).toString('hex')}`;

/** One place searched: where it is (for the failure message) and its text. */
export interface Haystack {
  where: string;
  text: string;
}

/** Every marker found, as `<marker> in <where>`: plain, and base64 as a Kubernetes Secret's data holds it. */
export function findMarkers(markers: readonly string[], haystacks: readonly Haystack[]): string[] {
  const found: string[] = [];
  for (const marker of markers) {
    const forms = [marker, Buffer.from(marker).toString('base64').replace(/=+$/, '')];
    for (const { where, text } of haystacks)
      if (forms.some((form) => text.includes(form))) found.push(`${marker} in ${where}`);
  }
  return found;
}

const isPayload = (value: unknown): value is Payload =>
  typeof value === 'object' &&
  value !== null &&
  'metadata' in value &&
  (('data' in value && value.data instanceof Uint8Array) || !('data' in value));

const text = (bytes: Uint8Array | null | undefined): string => (bytes ? Buffer.from(bytes).toString('utf8') : '');

/** Every payload anywhere in a history (inputs, results, failures' details, memos, search attributes, headers). */
function payloadsIn(value: unknown, found: Payload[] = []): Payload[] {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array) return found;
  if (isPayload(value) && 'data' in value) found.push(value);
  for (const child of Object.values(value)) payloadsIn(child, found);
  return found;
}

/** A payload's bytes as text, after the codecs (applied in reverse, as the SDK decodes). */
async function decoded(payload: Payload, dataConverter?: DataConverter): Promise<string> {
  let current = [payload];
  for (const codec of [...(dataConverter?.payloadCodecs ?? [])].reverse()) current = await codec.decode(current);
  return current.map((p) => `${text(p.metadata?.encoding)} ${text(p.data)}`).join('\n');
}

/**
 * The raw history of every workflow the client sees, each as one haystack: the events as stored (bytes read as text)
 * followed by every payload decoded.
 */
export async function historyHaystacks(
  client: Client,
  options: { dataConverter?: DataConverter; query?: string } = {},
): Promise<Haystack[]> {
  const haystacks: Haystack[] = [];
  for await (const run of client.workflow.list({ query: options.query })) {
    const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
    const raw = JSON.stringify(history, (_key, value: unknown) =>
      value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : value,
    );
    const payloads = await Promise.all(payloadsIn(history).map((p) => decoded(p, options.dataConverter)));
    haystacks.push({ where: `history of ${run.workflowId} ${run.runId}`, text: `${raw}\n${payloads.join('\n')}` });
  }
  return haystacks;
}

/** Every file under `dir`, each a haystack; none when `dir` does not exist. */
export async function fileHaystacks(dir: string): Promise<Haystack[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map(async (entry) => {
        const file = join(entry.parentPath, entry.name);
        return { where: file, text: await readFile(file, 'utf8') };
      }),
  );
}
