/**
 * Admission: before anything looks at a target, the request is parsed, the worker's policy for the environment is
 * loaded, the requester's token is verified and the policy judges the request. Every decision is audited.
 * Runs started before the platform policy carried their settings and a named requester; they keep them.
 */
import { patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { judgeFreeze, refuseRequester } from '../domain/authorization.js';
import { lockId } from '../domain/deployment.js';
import { fail, NON_RETRYABLE_TYPES } from '../domain/failures.js';
import type { Credential, Identity } from '../domain/identity.js';
import { budgetsOf, type EnvironmentPolicy } from '../domain/policy.js';
import {
  type DeployRequest,
  deployRequestSchema,
  type LegacyDeployRequest,
  type LegacyRollbackRequest,
  type RollbackRequest,
  rollbackRequestSchema,
} from '../domain/requests.js';
import {
  checkSpec,
  DEFAULT_BUDGETS,
  formatProblem,
  legacySecretEnvProblems,
  nameSchema,
  type ServiceEnvironment,
} from '../domain/spec.js';
import { describeError, type Runbook, type StatusInit } from './runbook.js';
import { SECURITY_RULES } from './steps.js';

/** Patch: requests carry a service spec and a credential; the worker's policy and a verified token judge them. */
export const PLATFORM_POLICY = 'platform-policy';

/** How votes and resolves prove who sends them. */
export type Verifier =
  | { kind: 'legacy' }
  | {
      kind: 'proven';
      verify: (credential: Credential, maxAgeMs?: number) => Promise<Identity>;
      maxVoteTokenAgeMs: number;
    };

export interface Admission {
  target: ServiceEnvironment;
  verifier: Verifier;
}

/** A request read but not yet judged: enough to open the runbook, and the way to admit it. */
export interface Intake {
  init: StatusInit;
  /** A rollback's wanted release: the deployment that applied it; the previous release when absent. */
  toDeploymentId?: string;
  admit: (runbook: Runbook) => Promise<Admission>;
}

const admissionActivities = proxyActivities<Activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumAttempts: 3, nonRetryableErrorTypes: NON_RETRYABLE_TYPES },
});

/** The admission phase's budget: the environment's own budgets are known only once its policy is loaded. */
const ADMISSION_BUDGET_MS = DEFAULT_BUDGETS.validate;

export function deployIntake(input: unknown): Intake {
  if (!patched(PLATFORM_POLICY)) {
    const legacy = input as LegacyDeployRequest;
    return legacyIntake(legacy, { kind: 'deploy', version: legacy.version });
  }
  const parsed = deployRequestSchema.safeParse(input);
  return parsed.success
    ? provenIntake('deploy', parsed.data)
    : refusedIntake('deploy', input, parsed.error.issues.map(formatProblem));
}

export function rollbackIntake(input: unknown): Intake {
  if (!patched(PLATFORM_POLICY)) {
    const legacy = input as LegacyRollbackRequest;
    return { ...legacyIntake(legacy, { kind: 'rollback' }), toDeploymentId: legacy.toDeploymentId };
  }
  const parsed = rollbackRequestSchema.safeParse(input);
  return parsed.success
    ? { ...provenIntake('rollback', parsed.data), toDeploymentId: parsed.data.toDeploymentId }
    : refusedIntake('rollback', input, parsed.error.issues.map(formatProblem));
}

function provenIntake(kind: 'deploy' | 'rollback', request: DeployRequest | RollbackRequest): Intake {
  const service = typeof request.spec.service === 'string' ? request.spec.service : '';
  const version = 'version' in request ? request.version : undefined;
  return {
    init: {
      kind,
      service: nameSchema.safeParse(service).success ? service : 'invalid',
      environment: request.environment,
      version,
      requestedBy: '(not yet verified)',
      reason: request.reason,
    },
    admit: (runbook) => runbook.phase('admission', ADMISSION_BUDGET_MS, () => judge(runbook, kind, request), describe),
  };
}

async function judge(
  runbook: Runbook,
  kind: 'deploy' | 'rollback',
  request: DeployRequest | RollbackRequest,
): Promise<Admission> {
  const invalid = (reason: string) => {
    runbook.audit('request', 'refused', '(unproven)', `${kind}: ${reason}`);
    return fail('invalid', reason);
  };
  const { spec, problems } = checkSpec(request.spec);
  if (!spec) throw invalid(`the service spec is invalid: ${problems.map(formatProblem).join('; ')}`);
  // Runs from before the security rules refused secret-looking names here; the rules judge them at validation now.
  const legacy = patched(SECURITY_RULES) ? [] : legacySecretEnvProblems(spec);
  if (legacy.length) throw invalid(`the service spec is invalid: ${legacy.map(formatProblem).join('; ')}`);
  const { environment } = request;
  const { workflowId } = workflowInfo();
  if (workflowId !== lockId(spec.service, environment))
    throw invalid(`workflow id ${workflowId} is not ${lockId(spec.service, environment)}, the lock of the request`);

  const policy = await admissionActivities.loadPolicy({ service: spec.service, environment, spec });
  runbook.status.policyHash = policy.hash;
  const verifier: Verifier = {
    kind: 'proven',
    verify: (credential, maxAgeMs) =>
      admissionActivities.verifyCredential({ credential, settings: policy.identity, maxAgeMs }),
    maxVoteTokenAgeMs: policy.identity.oidc?.maxVoteTokenAge ?? 300_000,
  };
  let requester: Identity;
  try {
    requester = await verifier.verify(request.credential);
  } catch (error) {
    runbook.audit('request', 'refused', '(unproven)', `${kind}: ${describeError(error)}`);
    throw error;
  }
  runbook.admitted(requester);
  const refuse = (reason: string) => {
    runbook.status.checks.push({ check: 'permission', passed: false, detail: reason });
    runbook.audit('request', 'refused', runbook.status.requestedBy, reason);
    return fail('forbidden', reason);
  };
  const forbidden = refuseRequester(environment, policy.environment, requester);
  if (forbidden) throw refuse(forbidden);
  const freeze = judgeFreeze(environment, policy.environment, requester, new Date(), request.breakGlass);
  if (freeze.refused) throw refuse(freeze.refused);
  if (freeze.override) runbook.audit('override', 'accepted', runbook.status.requestedBy, freeze.override);
  if (kind === 'deploy' && 'version' in request)
    await requirePromotion(spec.service, environment, policy.environment, request.version, refuse);
  const detail = `${runbook.status.requestedBy} may ${kind} in ${environment}`;
  runbook.status.checks.push({ check: 'permission', passed: true, detail });
  runbook.audit('request', 'accepted', runbook.status.requestedBy, `${kind}: ${detail}`);
  return {
    target: {
      service: spec.service,
      environment,
      spec,
      settings: policy.environment,
      budgets: budgetsOf(policy.environment),
    },
    verifier,
  };
}

/** Promotion order: a version reaches this environment only after it succeeded in the one before. */
async function requirePromotion(
  service: string,
  environment: string,
  policy: EnvironmentPolicy,
  version: string,
  refuse: (reason: string) => Error,
): Promise<void> {
  if (!policy.promotedFrom) return;
  const evidence = await admissionActivities.findPromotion({ service, environment: policy.promotedFrom, version });
  if (!evidence)
    throw refuse(
      `${version} has not been deployed successfully to ${policy.promotedFrom}, which ${environment} is promoted from`,
    );
}

function describe({ target }: Admission): string {
  return `policy for ${target.environment} loaded; requester verified and permitted`;
}

/** A request that is not even shaped right ends `invalid` at once, with a report naming what was wrong. */
function refusedIntake(kind: 'deploy' | 'rollback', input: unknown, problems: string[]): Intake {
  const fields = (value: unknown) =>
    typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  const name = (value: unknown) => (nameSchema.safeParse(value).success ? (value as string) : 'invalid');
  return {
    init: {
      kind,
      service: name(fields(fields(input).spec).service),
      environment: name(fields(input).environment),
      requestedBy: '(not verified)',
    },
    admit: (runbook) =>
      runbook.phase('admission', ADMISSION_BUDGET_MS, () => {
        const reason = `the request is invalid: ${problems.join('; ')}`;
        runbook.audit('request', 'refused', '(unproven)', `${kind}: ${reason}`);
        return Promise.reject(fail('invalid', reason));
      }),
  };
}

/** Runs started before the platform policy: their request held the environment's settings and a named requester. */
function legacyIntake(
  request: LegacyDeployRequest | LegacyRollbackRequest,
  init: Pick<StatusInit, 'kind' | 'version'>,
): Intake {
  const { target, requestedBy } = request;
  const { settings } = target;
  // Their Docker settings named one port, for the one service of the spec.
  const hostPort = (settings.docker as { hostPort?: number } | undefined)?.hostPort;
  const docker = settings.docker && { ...settings.docker, ports: { [target.service]: hostPort ?? 0 } };
  const admission: Admission = {
    target: { ...target, settings: { ...settings, docker } },
    verifier: { kind: 'legacy' },
  };
  return {
    init: { ...init, service: target.service, environment: target.environment, requestedBy, reason: request.reason },
    admit: (runbook) => {
      const forbidden = refuseRequester(target.environment, admission.target.settings, runbook.requester);
      runbook.status.checks.push({
        check: 'permission',
        passed: forbidden === undefined,
        detail: forbidden ?? `${requestedBy} may deploy`,
      });
      return forbidden ? Promise.reject(fail('forbidden', forbidden)) : Promise.resolve(admission);
    },
  };
}
