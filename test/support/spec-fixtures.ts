/** Valid deploy.yaml documents for tests; each test changes only what it is about. */
export interface FixtureOptions {
  service?: string;
  repository: string;
  dockerHost: string;
  hostPort: number;
  sourceRepository?: string;
}

export function specYaml(o: FixtureOptions, extra = ''): string {
  return `service: ${o.service ?? 'web-shop'}
target: docker
image:
  repository: ${o.repository}
healthCheck:
  path: /health
  interval: 200ms
  timeout: 1s
  healthyWithin: 8s
${o.sourceRepository ? `source:\n  repository: ${o.sourceRepository}\n` : ''}environments:
  staging:
    docker:
      host: ${o.dockerHost}
      hostPort: ${o.hostPort}
  production:
    protected: true
    deployers: [ci-bot]
    docker:
      host: ${o.dockerHost}
      hostPort: ${o.hostPort + 1}
    approval:
      required: 1
      approvers: [alice, bob]
      deadline: 24h
    rollbackRequiresApproval: true
${extra}`;
}
