/** The worker's logs (pino, JSON lines) and the endpoint Prometheus scrapes the agent's metrics from. */
import { createServer, type Server } from 'node:http';
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { pino } from 'pino';
import { metricsRegistry } from '../activities/metrics.js';

/** Temporal's logger interface on top of pino, so SDK and agent logs are one stream of JSON lines. */
export function pinoLogger(level: 'info' | 'warn' | 'error' = 'info'): Logger {
  const base = pino({ level, base: { component: 'deploy-agent-worker' } });
  const write = (logLevel: LogLevel, message: string, meta?: LogMetadata) => {
    const method = logLevel === 'TRACE' ? 'trace' : (logLevel.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
    base[method](meta ?? {}, message);
  };
  return {
    log: write,
    trace: (message, meta) => write('TRACE', message, meta),
    debug: (message, meta) => write('DEBUG', message, meta),
    info: (message, meta) => write('INFO', message, meta),
    warn: (message, meta) => write('WARN', message, meta),
    error: (message, meta) => write('ERROR', message, meta),
  };
}

/** Serves /metrics on 127.0.0.1:<port> for Prometheus to scrape. */
export async function serveMetrics(port: number, host = '127.0.0.1'): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    metricsRegistry
      .metrics()
      .then((body) => response.writeHead(200, { 'Content-Type': metricsRegistry.contentType }).end(body))
      .catch((error: unknown) => response.writeHead(500).end(String(error)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
