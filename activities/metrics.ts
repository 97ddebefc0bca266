/** The agent's own Prometheus metrics (success metrics), recorded by activities and served by the worker. */
import { Counter, Histogram, Registry } from 'prom-client';
import type { DeploymentStatus } from '../domain/deployment.js';

export const metricsRegistry = new Registry();

const deployments = new Counter({
  name: 'deploy_agent_deployments_total',
  help: 'Deployments and rollbacks that ended, by how they ended',
  labelNames: ['kind', 'service', 'environment', 'state'] as const,
  registers: [metricsRegistry],
});

const durations = new Histogram({
  name: 'deploy_agent_deployment_duration_seconds',
  help: 'Wall time of ended deployments and rollbacks, approval waits included',
  labelNames: ['kind', 'service', 'environment'] as const,
  buckets: [5, 15, 30, 60, 120, 300, 900, 3600, 86400],
  registers: [metricsRegistry],
});

/** Success metrics: called once per ended deployment, when its report is published. */
export function recordOutcome(status: DeploymentStatus): void {
  const labels = { kind: status.kind, service: status.service, environment: status.environment };
  deployments.inc({ ...labels, state: status.state });
  if (status.finishedAt)
    durations.observe(labels, (Date.parse(status.finishedAt) - Date.parse(status.startedAt)) / 1000);
}
