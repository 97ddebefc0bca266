/** The steps both runbooks take against a target, each an activity call with its own timeouts and retries. */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { refuseRequester } from '../domain/authorization.js';
import { type DeploymentState, FailureType } from '../domain/deployment.js';
import type { ConsistencyReport, PinnedImage, ReleaseState } from '../domain/release.js';
import { type DockerTarget, dockerTargetOf } from '../domain/requests.js';
import { formatProblem, policyProblems, type ServiceEnvironment } from '../domain/spec.js';
import type { Runbook } from './runbook.js';

const NOT_RETRYABLE = [FailureType.invalid, FailureType.unhealthy, FailureType.inconsistent];

/** Quick looks at a target: an unreachable one is retried briefly, then reported as unreachable. */
const look = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3, nonRetryableErrorTypes: NOT_RETRYABLE },
});

/** Changes to a target: retried until the phase's budget cancels them, which is safe because they are idempotent. */
const change = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  heartbeatTimeout: '30s',
  retry: {
    initialInterval: '1s',
    backoffCoefficient: 2,
    maximumInterval: '10s',
    nonRetryableErrorTypes: NOT_RETRYABLE,
  },
});

export const { trackChanges, publishReport } = look;
export const { snapshotRelease, findKeptRelease, pruneHistory } = look;

/** Configuration, permission, environment compatibility and dependency checks; all problems reported at once. */
export async function validateTarget(
  runbook: Runbook,
  target: ServiceEnvironment,
  requestedBy: string,
): Promise<ReleaseState> {
  const docker = dockerTargetOf(target);
  const record = (check: string, problems: string[], ok: string) => {
    runbook.status.checks.push({ check, passed: problems.length === 0, detail: problems.join('; ') || ok });
    return problems;
  };
  const forbidden = refuseRequester(target.environment, target.settings, requestedBy);
  if (forbidden) {
    record('permission', [forbidden], '');
    throw ApplicationFailure.create({ type: FailureType.forbidden, nonRetryable: true, message: forbidden });
  }
  record('permission', [], `${requestedBy} may deploy to ${target.environment}`);
  const problems = record(
    'configuration and security policy',
    policyProblems(target.spec).map(formatProblem),
    'spec satisfies policy',
  );
  const environment = await look.inspectDockerEnvironment(docker, target.spec.dependsOn);
  const compatibility = environment.problems.filter((p) => !p.startsWith('dependency'));
  const dependencies = environment.problems.filter((p) => p.startsWith('dependency'));
  problems.push(
    ...record(
      'environment compatibility',
      compatibility,
      `Docker ${environment.engineVersion}, API ${environment.apiVersion}`,
    ),
  );
  const dependsOn = target.spec.dependsOn.join(', ');
  problems.push(...record('dependencies', dependencies, dependsOn ? `running: ${dependsOn}` : 'none declared'));
  if (problems.length)
    throw ApplicationFailure.create({ type: FailureType.invalid, nonRetryable: true, message: problems.join('; ') });
  return environment.current;
}

export async function pinImage(
  runbook: Runbook,
  docker: DockerTarget,
  repository: string,
  version: string,
): Promise<PinnedImage> {
  try {
    const image = await look.resolveImage(docker, repository, version);
    runbook.status.checks.push({ check: 'image pinned by digest', passed: true, detail: image.reference });
    return image;
  } catch (error) {
    runbook.status.checks.push({
      check: 'image pinned by digest',
      passed: false,
      detail: `${repository}:${version} not resolvable`,
    });
    throw error;
  }
}

export async function applyAndAwaitHealthy(
  runbook: Runbook,
  target: ServiceEnvironment,
  docker: DockerTarget,
  release: { deploymentId: string; version: string; image: PinnedImage },
): Promise<void> {
  runbook.status.applied = await runbook.phase(
    'apply',
    undefined,
    () => change.applyRelease({ target: docker, ...release }),
    (state) => `container ${state.handle?.slice(0, 12)} running ${release.image.reference}`,
  );
  await runbook.phase(
    'verify',
    undefined,
    () => awaitHealthy(target, docker),
    (detail) => detail,
  );
}

export function awaitHealthy(target: ServiceEnvironment, docker: DockerTarget): Promise<string> {
  const check = target.spec.healthCheck;
  return proxyActivities<Activities>({
    startToCloseTimeout: check.healthyWithin + 30_000,
    heartbeatTimeout: check.interval + check.timeout + 10_000,
    retry: { maximumAttempts: 2, nonRetryableErrorTypes: NOT_RETRYABLE },
  }).awaitHealthy({ check, host: docker.hostIp, port: docker.hostPort });
}

/** Brings back `to` exactly and proves it: the data-consistency verification every restore ends with. */
export async function restoreAndVerify(
  docker: DockerTarget,
  to: ReleaseState,
  keepCurrent: boolean,
): Promise<ConsistencyReport> {
  await change.restoreRelease({ target: docker, to, keepCurrent });
  const consistency = await look.verifyRelease(docker, to);
  if (!consistency.consistent) {
    const differences = consistency.checks
      .filter((c) => !c.equal)
      .map((c) => `${c.field} is ${c.actual}, expected ${c.expected}`);
    throw ApplicationFailure.create({
      type: FailureType.inconsistent,
      nonRetryable: true,
      message: `live state differs from the rollback point: ${differences.join('; ')}`,
      details: [consistency],
    });
  }
  return consistency;
}

/** Report generation never changes how a deployment ended; a failure to publish is recorded in the status. */
export async function finishAndReport(runbook: Runbook, state: DeploymentState, budgetMs: number): Promise<void> {
  runbook.finish(state);
  try {
    runbook.status.reportPath = await runbook.phase(
      'report',
      budgetMs,
      () => publishReport(runbook.status),
      (p) => p,
    );
  } catch {
    // already recorded in the status by the phase
  }
}
