import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeploymentStatus } from '../../domain/deployment.js';
import { recordOutcome } from '../../activities/metrics.js';
import { serveMetrics } from '../../worker/observability.js';

const ended: DeploymentStatus = {
  deploymentId: 'web.prod.0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b',
  kind: 'deploy',
  service: 'web',
  environment: 'prod',
  version: '1.0.0',
  requestedBy: 'ci-bot',
  startedAt: '2026-01-01T00:00:00.000Z',
  finishedAt: '2026-01-01T00:00:42.000Z',
  state: 'rolled-back',
  phase: 'report',
  phases: [],
  checks: [],
  errors: [],
};

describe('worker metrics', () => {
  it('counts ended deployments by outcome and serves them to Prometheus', async () => {
    recordOutcome(ended);
    const server = await serveMetrics(0);
    try {
      const { port } = server.address() as { port: number };
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(
        body,
        /deploy_agent_deployments_total\{kind="deploy",service="web",environment="prod",state="rolled-back"\} 1/,
      );
      assert.match(
        body,
        /deploy_agent_deployment_duration_seconds_sum\{kind="deploy",service="web",environment="prod"\} 42/,
      );
      assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
    } finally {
      server.close();
    }
  });
});
