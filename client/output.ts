import { setTimeout as delay } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import type { DeploymentStatus } from '../domain/deployment.js';
import { phaseLine, renderReport } from '../domain/report.js';
import { statusQuery } from '../workflows/messages.js';

export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

export function printStatus(status: DeploymentStatus): void {
  printLine(renderReport(status));
}

const POLL_MS = 1_000;

/** Waits for the end of a deployment, printing each phase as it starts and ends (when `live`). */
export async function followProgress(handle: WorkflowHandle, live: boolean): Promise<DeploymentStatus> {
  let outcome: { status: DeploymentStatus } | undefined;
  let failure: unknown;
  const result = handle.result().then(
    (status: DeploymentStatus) => (outcome = { status }),
    (error: unknown) => (failure = error ?? new Error('workflow failed')),
  );
  const shown = new Set<string>();
  let lastState = '';
  const show = (status: DeploymentStatus) => {
    if (!live) return;
    if (status.state !== lastState) printLine(`[${status.state}]`);
    lastState = status.state;
    status.phases.forEach((phase, index) => {
      const line = phaseLine(phase);
      const key = `${index}:${phase.status}`;
      if (!shown.has(key)) printLine(`  ${line}`);
      shown.add(key);
    });
  };
  while (!outcome && !failure) {
    try {
      show(await handle.query(statusQuery));
    } catch {
      // no worker has answered yet: try again on the next tick
    }
    await Promise.race([result, delay(POLL_MS)]);
  }
  if (failure) throw failure;
  const final = (outcome as { status: DeploymentStatus }).status;
  show(final);
  return final;
}
