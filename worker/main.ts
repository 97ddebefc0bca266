/**
 * The worker process: `node dist/worker/main.js` (the container's command), or `deploy-agent worker`. It polls
 * the Temporal the CLI reaches (TEMPORAL_* variables or a temporal.toml profile: address, namespace, TLS, API key)
 * with the workflow bundle `npm run build` wrote, until SIGINT or SIGTERM.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime, TransportError } from '@temporalio/worker';
import { connectionSettings } from '../client/settings.js';
import { loadPolicyFile } from '../activities/policy.js';
import { CliFailure, InvalidInput, messageOf, TemporalUnreachable } from '../domain/failures.js';
import { keyRingFromEnv } from '../keys/key-ring.js';
import { createWorker, policyFileFromEnv, reportsDirFromEnv } from './index.js';
import { pinoLogger, serveMetrics } from './observability.js';

/** Runs a worker until the process is interrupted; the answer is the process exit code. */
export async function runWorker(): Promise<number> {
  Runtime.install({ logger: pinoLogger() });
  const metricsPort = process.env.DEPLOY_AGENT_METRICS_PORT;
  const metrics = metricsPort
    ? await serveMetrics(Number(metricsPort), process.env.DEPLOY_AGENT_METRICS_HOST)
    : undefined;
  try {
    // Payloads are encrypted or there is no worker: without a key ring it refuses to start (exit 2).
    const keyRing = keyRingFromEnv();
    // A worker without a valid policy would refuse every deployment: it refuses to start instead (exit 2).
    const policyFile = policyFileFromEnv();
    if (!policyFile) throw new InvalidInput('no platform policy: pass --policy FILE or set DEPLOY_AGENT_POLICY');
    await loadPolicyFile(policyFile);
    const { address, namespace, tls, apiKey, metadata } = connectionSettings();
    const connection = await NativeConnection.connect({ address, tls, apiKey, metadata }).catch((error: unknown) => {
      // The worker's native connection reports a server it cannot reach, a failed TLS handshake and a refused
      // certificate or API key all as a TransportError.
      throw error instanceof TransportError ? new TemporalUnreachable(address, error) : error;
    });
    try {
      const worker = await createWorker({
        connection,
        namespace,
        reportsDir: reportsDirFromEnv(),
        policyFile,
        keyRing,
      });
      process.stdout.write(`worker polling ${address} namespace ${namespace}\n`);
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
