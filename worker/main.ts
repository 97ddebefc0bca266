/**
 * The worker process: `node dist/worker/main.js` (the container's command), or `deploy-agent worker`. It polls
 * TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE with the workflow bundle `npm run build` wrote, until SIGINT or SIGTERM.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, TransportError } from '@temporalio/worker';
import { settings } from '../client/settings.js';
import { CliFailure, messageOf, TemporalUnreachable } from '../domain/failures.js';
import { createWorker, reportsDirFromEnv } from './index.js';
import { pinoLogger, serveMetrics } from './observability.js';

/** Runs a worker until the process is interrupted; the answer is the process exit code. */
export async function runWorker(): Promise<number> {
  Runtime.install({ logger: pinoLogger() });
  const metricsPort = process.env.DEPLOY_AGENT_METRICS_PORT;
  const metrics = metricsPort
    ? await serveMetrics(Number(metricsPort), process.env.DEPLOY_AGENT_METRICS_HOST)
    : undefined;
  try {
    const address = settings.address();
    const connection = await NativeConnection.connect({ address }).catch((error: unknown) => {
      // The worker's native connection reports a server it cannot reach as a TransportError.
      throw error instanceof TransportError ? new TemporalUnreachable(address, error) : error;
    });
    try {
      const worker = await createWorker({
        connection,
        namespace: settings.namespace(),
        reportsDir: reportsDirFromEnv(),
      });
      process.stdout.write(`worker polling ${address} namespace ${settings.namespace()}\n`);
      const running = worker.run();
      await Promise.race([running, untilInterrupted()]);
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    } finally {
      await connection.close();
    }
  } finally {
    metrics?.close();
  }
  return 0;
}

export function untilInterrupted(): Promise<string> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
}

function isEntryPoint(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint())
  process.exitCode = await runWorker().catch((error: unknown) => {
    process.stderr.write(`deploy-agent: ${messageOf(error)}\n`);
    return error instanceof CliFailure ? error.exitCode : 1;
  });
