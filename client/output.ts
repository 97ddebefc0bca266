import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
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

/** What running activities last reported by heartbeat (rollout replicas, health probes): live progress. */
export async function heartbeats(handle: WorkflowHandle): Promise<string[]> {
  const { raw } = await handle.describe();
  return (raw.pendingActivities ?? []).flatMap((activity) => {
    const payload = activity.heartbeatDetails?.payloads?.[0];
    if (!payload) return [];
    const details: unknown = defaultPayloadConverter.fromPayload(payload);
    const rollout = (details as { rollout?: unknown } | undefined)?.rollout;
    const text = Array.isArray(rollout) ? rollout.join('; ') : JSON.stringify(details);
    return [`${activity.activityType?.name ?? 'activity'}: ${text}`];
  });
}
