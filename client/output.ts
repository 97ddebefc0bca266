import type { WorkflowHandle } from '@temporalio/client';
import type { DeploymentStatus } from '../domain/deployment.js';
import { renderReport } from '../domain/report.js';

/** The output options of the verbs that print a deployment. */
export interface OutputOptions {
  json?: boolean;
}

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printStatus(status: DeploymentStatus): void {
  printLine(renderReport(status));
}

/**
 * What running activities last reported by heartbeat (rollout replicas, health probes): live progress. The details
 * are payloads like any other, sealed by the payload codec: they are opened with the client's own data converter.
 */
export async function heartbeats(handle: WorkflowHandle): Promise<string[]> {
  const { raw } = await handle.describe();
  const { payloadCodecs, payloadConverter } = handle.client.options.loadedDataConverter;
  const lines: string[] = [];
  for (const activity of raw.pendingActivities ?? []) {
    const payload = activity.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    let payloads = [payload];
    // Codecs decode in the reverse of the order they encoded.
    for (const codec of [...payloadCodecs].reverse()) payloads = await codec.decode(payloads);
    const details: unknown = payloads[0] && payloadConverter.fromPayload(payloads[0]);
    const rollout = (details as { rollout?: unknown } | undefined)?.rollout;
    const text = Array.isArray(rollout) ? rollout.join('; ') : JSON.stringify(details);
    lines.push(`${activity.activityType?.name ?? 'activity'}: ${text}`);
  }
  return lines;
}
