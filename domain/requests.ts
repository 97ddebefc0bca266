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
  kind: 'docker';
  service: string;
  environment: string;
  host: string;
  hostIp: string;
  hostPort: number;
  containerPort: number;
  env: Record<string, string>;
  historyLimit: number;
}

/** What the Kubernetes activities need: where the cluster is (paths only, never credentials) and the release. */
export interface KubernetesTarget {
  kind: 'kubernetes';
  service: string;
  environment: string;
  kubeconfig?: string;
  context?: string;
  namespace: string;
  manifestsDir: string;
  imageRepository: string;
  historyLimit: number;
  fieldManager: string;
}

export type Target = DockerTarget | KubernetesTarget;

export function targetOf({ service, environment, spec, settings }: ServiceEnvironment): Target {
  const common = { service, environment, historyLimit: settings.historyLimit };
  if (spec.target === 'kubernetes' && settings.kubernetes && spec.release)
    return {
      kind: 'kubernetes',
      ...common,
      ...settings.kubernetes,
      manifestsDir: spec.release.manifests,
      imageRepository: spec.image.repository,
      fieldManager: 'deploy-agent',
    };
  if (spec.target === 'docker' && settings.docker)
    return {
      kind: 'docker',
      ...common,
      host: settings.docker.host,
      hostIp: settings.docker.hostIp,
      hostPort: settings.docker.hostPort,
      containerPort: spec.container.port,
      env: { ...spec.container.env, ...settings.docker.env },
    };
  // The spec schema makes this unreachable; kept so a hand-made request fails loudly.
  throw new Error(`environment ${environment} has no ${spec.target} settings`);
}
