import type { ServiceEnvironment } from './spec.js';

export interface DeployRequest {
  target: ServiceEnvironment;
  version: string;
  requestedBy: string;
  reason?: string;
}

export interface RollbackRequest {
  target: ServiceEnvironment;
  /** A deployment whose release to bring back; the previous release when absent. */
  toDeploymentId?: string;
  requestedBy: string;
  reason?: string;
}

/** What the Docker activities need to find and run one service in one environment. */
export interface DockerTarget {
  service: string;
  environment: string;
  host: string;
  hostIp: string;
  hostPort: number;
  containerPort: number;
  env: Record<string, string>;
  historyLimit: number;
}

export function dockerTargetOf({ service, environment, spec, settings }: ServiceEnvironment): DockerTarget {
  return {
    service,
    environment,
    host: settings.docker.host,
    hostIp: settings.docker.hostIp,
    hostPort: settings.docker.hostPort,
    containerPort: spec.container.port,
    env: { ...spec.container.env, ...settings.docker.env },
    historyLimit: settings.historyLimit,
  };
}
