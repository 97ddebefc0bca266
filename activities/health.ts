import { Socket } from 'node:net';
import { Context, heartbeat } from '@temporalio/activity';
import { formatDuration } from '../domain/duration.js';
import type { HealthCheckSpec } from '../domain/spec.js';
import { fail, messageOf } from '../domain/failures.js';

export interface HealthProbe {
  check: HealthCheckSpec;
  host: string;
  port: number;
}

async function probeOnce({ check, host, port }: HealthProbe): Promise<string | undefined> {
  if (check.type === 'tcp') {
    return new Promise((resolve) => {
      const socket = new Socket();
      const done = (problem?: string) => {
        socket.destroy();
        resolve(problem);
      };
      socket.setTimeout(check.timeout, () => done(`no TCP connection within ${formatDuration(check.timeout)}`));
      socket.once('error', (error) => done(messageOf(error)));
      socket.connect(port, host, () => done());
    });
  }
  try {
    const response = await fetch(`http://${host}:${port}${check.path}`, { signal: AbortSignal.timeout(check.timeout) });
    await response.body?.cancel();
    return response.ok ? undefined : `HTTP ${response.status} from ${check.path}`;
  } catch (error) {
    return messageOf(error);
  }
}

/** Polls until the service answers healthy; heartbeats every probe so a stuck check is noticed and cancellable. */
export async function awaitHealthy(probe: HealthProbe): Promise<string> {
  const context = Context.current();
  const deadline = Date.now() + probe.check.healthyWithin;
  let attempts = 0;
  let problem: string | undefined;
  for (;;) {
    attempts += 1;
    problem = await probeOnce(probe);
    if (problem === undefined)
      return `healthy after ${attempts} probe(s) of ${probe.check.type} ${probe.host}:${probe.port}`;
    heartbeat({ attempts, problem });
    if (Date.now() + probe.check.interval > deadline) break;
    await context.sleep(probe.check.interval);
  }
  throw fail(
    'unhealthy',
    `not healthy within ${formatDuration(probe.check.healthyWithin)} (${attempts} probes; last: ${problem})`,
  );
}
