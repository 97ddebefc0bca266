import { setTimeout as delay } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { DeploymentStatus } from '../domain/deployment.js';
import { phaseLine, renderReport } from '../domain/report.js';
import { statusQuery } from '../workflows/messages.js';

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

const POLL_MS = 1_000;

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

/** Waits for the end of a deployment, printing each phase as it starts and ends (when `live`). */
export async function followProgress(handle: WorkflowHandle, live: boolean): Promise<DeploymentStatus> {
  type Ending = { status: DeploymentStatus } | { error: unknown };
  let ended: Ending | undefined;
  const settled = handle.result().then(
    (status: DeploymentStatus): Ending => (ended = { status }),
    (error: unknown): Ending => (ended = { error }),
  );
  const shown = new Set<string>();
  let lastState = '';
  const show = (status: DeploymentStatus) => {
    if (!live) return;
    if (status.state !== lastState) printLine(`[${status.state}]`);
    lastState = status.state;
    status.phases.forEach((phase, index) => {
      const key = `${index}:${phase.status}`;
      if (!shown.has(key)) printLine(`  ${phaseLine(phase)}`);
      shown.add(key);
    });
  };
  let lastBeat = '';
  while (!ended) {
    try {
      show(await handle.query(statusQuery));
      const beat = live ? (await heartbeats(handle)).join('\n    ') : '';
      if (beat && beat !== lastBeat) printLine(`    ${beat}`);
      lastBeat = beat;
    } catch {
      // no worker has answered yet: try again on the next tick
    }
    await Promise.race([settled, delay(POLL_MS)]);
  }
  const ending = await settled;
  if ('error' in ending) throw ending.error instanceof Error ? ending.error : new Error(String(ending.error));
  show(ending.status);
  return ending.status;
}
