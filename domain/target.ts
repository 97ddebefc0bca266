/**
 * What a target driver is asked and what it answers: the request and response types of every target operation.
 * A `Target` says where one service in one environment lives; the driver for its kind does the work.
 */
import type { ContainerSpec, ServiceEnvironment } from './spec.js';
import { fail } from './failures.js';
import { type SecretReference, secretReferences } from './secrets.js';
import type { PinnedImage, ReleaseState } from './release.js';

/** What the Docker activities need to find and run one service in one environment. */
export interface DockerTarget {
  kind: 'docker';
  service: string;
  environment: string;
  host: string;
  hostIp: string;
  /** Paths of the engine's CA and the worker's client certificate, when the engine requires TLS. */
  tls?: { ca: string; cert: string; key: string };
  hostPort: number;
  containerPort: number;
  env: Record<string, string>;
  /** Variables whose values the driver reads when it creates the container: references only, never values. */
  secrets?: Record<string, SecretReference>;
  historyLimit: number;
  /** How the container runs, secrets by reference name only; absent in runs from before, which get the defaults. */
  container?: DockerContainerSettings;
}

/** The spec's secret references and departures from the safe defaults (user, privileges, host namespaces, mounts, limits). */
export type DockerContainerSettings = Omit<ContainerSpec, 'port' | 'env' | 'secrets' | 'stopGracePeriod'> &
  Partial<Pick<ContainerSpec, 'secrets' | 'stopGracePeriod'>>;

/** What the Kubernetes activities need: where the cluster is (paths only, never credentials) and the release. */
export interface KubernetesTarget {
  kind: 'kubernetes';
  service: string;
  environment: string;
  kubeconfig?: string;
  context?: string;
  /** Whether the kubeconfig's user may run a credential program (exec, auth-provider). */
  allowExecCredentials?: boolean;
  /** Whether apply may take over objects no release of this service and environment owns. */
  adoptExisting?: boolean;
  /** Kinds restore may write besides the default ones (`Kind` or `Kind.group`). */
  restorableKinds?: string[];
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
  const hostPort = settings.docker?.ports[service];
  // Runs started before secrets existed carry specs and policies without them.
  const secrets = secretReferences(service, spec.container.secrets ?? {}, settings.secrets ?? {});
  if (spec.target === 'docker' && settings.docker && hostPort !== undefined)
    return {
      kind: 'docker',
      ...common,
      host: settings.docker.host,
      tls: settings.docker.tls,
      hostIp: settings.docker.hostIp,
      hostPort,
      containerPort: spec.container.port,
      env: { ...spec.container.env, ...settings.docker.env },
      container: dockerContainerSettings(spec.container),
      ...(Object.keys(secrets).length ? { secrets } : {}),
    };
  // Admission refuses this first; kept so that no other path reaches a target the policy does not describe.
  throw fail('invalid', `the platform policy gives ${service} no ${spec.target} target in ${environment}`);
}

function dockerContainerSettings(container: ContainerSpec): DockerContainerSettings {
  const { secrets, resources, user, privileged, capabilities, hostNetwork, hostPid, mounts, stopGracePeriod } =
    container;
  return { secrets, resources, user, privileged, capabilities, hostNetwork, hostPid, mounts, stopGracePeriod };
}

/** What validation learns from a target: what it is, what runs there now, and what stands in the way. */
export interface EnvironmentReport {
  description: string;
  current: ReleaseState;
  problems: string[];
}

/** One release to put live, pinned by digest, labelled with the deployment that applies it. */
export interface ApplyRequest {
  target: Target;
  deploymentId: string;
  version: string;
  image: PinnedImage;
  /** The content validation computed (and approvers voted on): apply refuses to put anything else live. */
  contentHash?: string;
}

export interface RestoreRequest {
  target: Target;
  to: ReleaseState;
  /** Keep the release being replaced as a rollback point (manual rollback) or remove it (failed deploy). */
  keepCurrent: boolean;
}

/** The release live now and the releases kept to roll back to, newest first. */
export interface KeptReleases {
  live: ReleaseState;
  kept: ReleaseState[];
  /** How the driver names where they are kept, for messages. */
  where: string;
}

/**
 * The release a rollback brings back: the one a deployment applied, or without an id the newest kept release that
 * differs from the live one, so a second rollback toggles back like `kubectl rollout undo`.
 */
export function chooseKeptRelease({ live, kept, where }: KeptReleases, deploymentId?: string): ReleaseState {
  const found = deploymentId
    ? kept.find((release) => release.deploymentId === deploymentId)
    : kept.find((release) => release.present && release.configHash !== live.configHash);
  if (found) return found;
  throw fail(
    'invalid',
    deploymentId
      ? `the release of deployment ${deploymentId} is not among the ${kept.length} releases kept for ${where}`
      : `no previous release of ${where} is kept to roll back to`,
  );
}
