import { z } from 'zod';
import { durationSchema } from './duration.js';
import { InvalidInput } from './failures.js';

/** Time budgets of a deploy's phases, in milliseconds: part of the product, enforced by workflow timers. */
export const DEFAULT_BUDGETS = {
  validate: 120_000,
  trackChanges: 30_000,
  environmentUpdate: 180_000,
  rollback: 300_000,
  report: 60_000,
} as const;
export type BudgetName = keyof typeof DEFAULT_BUDGETS;

const DEFAULT_APPROVAL_DEADLINE = 24 * 3_600_000;

/** DNS-label names: safe in container names, Kubernetes objects, workflow ids and search attributes alike. */
const nameSchema = z.string({ error: 'expected a name' }).regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, {
  error: 'expected lowercase letters, digits and dashes (a DNS label)',
});

const identitySchema = z.string().min(1, { error: 'expected a user name' });

const portSchema = z.int({ error: 'expected a port number (1-65535)' }).min(1).max(65535);

export const healthCheckSchema = z.strictObject({
  type: z.enum(['http', 'tcp']).default('http'),
  path: z.string().startsWith('/', { error: 'expected a path starting with /' }).default('/health'),
  timeout: durationSchema.default(2_000),
  interval: durationSchema.default(1_000),
  /** How long a new release has to become healthy before the deploy fails. */
  healthyWithin: durationSchema.default(60_000),
});

const budgetsSchema = z.strictObject({
  validate: durationSchema.optional(),
  trackChanges: durationSchema.optional(),
  environmentUpdate: durationSchema.optional(),
  rollback: durationSchema.optional(),
  report: durationSchema.optional(),
});

export const dockerEnvironmentSchema = z.strictObject({
  /** Docker engine address, e.g. unix:///var/run/docker.sock or tcp://127.0.0.1:2375. */
  host: z.string().regex(/^(unix|tcp|http|https):\/\//, { error: 'expected unix://PATH or tcp://HOST:PORT' }),
  /** The host port the service's container port is published on. */
  hostPort: portSchema,
  hostIp: z.ipv4().default('127.0.0.1'),
  env: z.record(z.string(), z.string()).default({}),
});

export const approvalPolicySchema = z
  .strictObject({
    required: z.int().min(0).max(10).default(0),
    approvers: z.array(identitySchema).default([]),
    deadline: durationSchema.default(DEFAULT_APPROVAL_DEADLINE),
  })
  .refine((policy) => policy.required <= policy.approvers.length, {
    error: 'needs at least as many approvers as required approvals',
    path: ['approvers'],
  });

export const kubernetesEnvironmentSchema = z.strictObject({
  /** A kubeconfig file, relative to the spec; the usual KUBECONFIG or ~/.kube/config when absent. */
  kubeconfig: z.string().min(1).optional(),
  /** The kubeconfig context; its current context when absent. */
  context: z.string().min(1).optional(),
  namespace: nameSchema,
});

export const environmentSchema = z.strictObject({
  /** How to reach this environment: the block matching the spec's target. */
  docker: dockerEnvironmentSchema.optional(),
  kubernetes: kubernetesEnvironmentSchema.optional(),
  /** Who may request deploys and rollbacks here; empty means anyone. */
  deployers: z.array(identitySchema).default([]),
  approval: approvalPolicySchema.default({ required: 0, approvers: [], deadline: DEFAULT_APPROVAL_DEADLINE }),
  /** Production restrictions: deploys need approval and a named list of deployers. */
  protected: z.boolean().default(false),
  /** Manual rollbacks need one approver's authorization (from approval.approvers). */
  rollbackRequiresApproval: z.boolean().default(false),
  budgets: budgetsSchema.default({}),
  /** How many replaced releases are kept on the target as rollback points. */
  historyLimit: z.int().min(1).max(50).default(5),
});

export const serviceSpecSchema = z
  .strictObject({
    service: nameSchema,
    target: z.enum(['docker', 'kubernetes'], { error: 'expected "docker" or "kubernetes"' }),
    image: z.strictObject({
      /** Repository without tag, e.g. registry.example.com/team/web-shop; the version is the tag. */
      repository: z
        .string()
        .regex(/^[a-z0-9]+([._:/-][a-z0-9]+)*$/, { error: 'expected an image repository without tag' }),
    }),
    container: z
      .strictObject({
        port: portSchema.default(8080),
        env: z.record(z.string(), z.string()).default({}),
      })
      .default({ port: 8080, env: {} }),
    healthCheck: healthCheckSchema.default({
      type: 'http',
      path: '/health',
      timeout: 2_000,
      interval: 1_000,
      healthyWithin: 60_000,
    }),
    /** Services this one needs running and healthy in the same environment. */
    dependsOn: z.array(nameSchema).default([]),
    /** Where change tracking reads commits between versions. */
    source: z
      .strictObject({
        repository: z.string().min(1, { error: 'expected a path to a git repository' }),
        /** How a version maps to a git ref; {version} is replaced. */
        ref: z
          .string()
          .includes('{version}', { error: 'expected a pattern containing {version}' })
          .default('v{version}'),
      })
      .optional(),
    /** Kubernetes: the directory of plain YAML manifests that make up a release, relative to the spec. */
    release: z
      .strictObject({ manifests: z.string().min(1, { error: 'expected a directory of manifests' }) })
      .optional(),
    environments: z
      .record(nameSchema, environmentSchema)
      .refine((envs) => Object.keys(envs).length > 0, { error: 'expected at least one environment' }),
  })
  .superRefine((spec, context) => {
    if (spec.target === 'kubernetes' && !spec.release)
      context.addIssue({
        code: 'custom',
        path: ['release'],
        message: 'missing, expected release.manifests for the kubernetes target',
      });
    for (const [name, env] of Object.entries(spec.environments))
      if (!env[spec.target])
        context.addIssue({
          code: 'custom',
          path: ['environments', name, spec.target],
          message: `missing, expected how to reach this environment with the ${spec.target} target`,
        });
  });

export interface SpecProblem {
  path: PropertyKey[];
  message: string;
}

export const formatProblem = ({ path, message }: SpecProblem): string =>
  `${path.length ? path.map(String).join('.') : '(top level)'}: ${message.replace(MISSING, 'missing, expected $1')}`;

const MISSING = /^Invalid input: expected (\w+), received undefined$/;

/** Policy checks that need no network: the same in `deploy-agent validate` and the workflow's validation phase. */
export function policyProblems(spec: ServiceSpec): SpecProblem[] {
  const problems: SpecProblem[] = [];
  for (const [name, env] of Object.entries(spec.environments)) {
    const at = (...path: string[]) => ['environments', name, ...path];
    if (env.protected && env.approval.required < 1)
      problems.push({ path: at('approval', 'required'), message: 'a protected environment needs at least 1 approval' });
    if (env.protected && env.deployers.length === 0)
      problems.push({ path: at('deployers'), message: 'a protected environment needs a list of who may deploy' });
    if (env.rollbackRequiresApproval && env.approval.approvers.length === 0)
      problems.push({
        path: at('approval', 'approvers'),
        message: 'rollback authorization needs at least one approver',
      });
    for (const key of Object.keys(env.docker?.env ?? {}).filter((k) => SECRET_NAME.test(k)))
      problems.push({ path: at('docker', 'env', key), message: SECRET_MESSAGE });
  }
  for (const key of Object.keys(spec.container.env).filter((k) => SECRET_NAME.test(k)))
    problems.push({ path: ['container', 'env', key], message: SECRET_MESSAGE });
  return problems;
}

const SECRET_MESSAGE =
  'looks like a secret; plain values end up in reports and histories, expected a non-secret setting';
const SECRET_NAME = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$/i;

export type ServiceSpec = z.infer<typeof serviceSpecSchema>;
export type EnvironmentSpec = z.infer<typeof environmentSchema>;
export type HealthCheckSpec = z.infer<typeof healthCheckSchema>;
export type ApprovalPolicy = z.infer<typeof approvalPolicySchema>;
export type Budgets = Record<BudgetName, number>;

export const versionSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: 'expected a version usable as an image tag, like 1.4.2' });

export function budgetsOf(environment: EnvironmentSpec): Budgets {
  return { ...DEFAULT_BUDGETS, ...stripUndefined(environment.budgets) };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Everything a deploy or rollback workflow needs about one environment of one service. */
export interface ServiceEnvironment {
  service: string;
  environment: string;
  spec: ServiceSpec;
  settings: EnvironmentSpec;
  budgets: Budgets;
}

export function resolveEnvironment(spec: ServiceSpec, environment: string, file = 'the spec'): ServiceEnvironment {
  const settings = spec.environments[environment];
  if (!settings) {
    const known = Object.keys(spec.environments).join(', ');
    throw new SpecError(file, [`environments.${environment}: not defined (defined: ${known})`]);
  }
  return { service: spec.service, environment, spec, settings, budgets: budgetsOf(settings) };
}

/** A spec that failed validation: one line per problem, each naming the file and the path inside it. */
export class SpecError extends InvalidInput {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file} is invalid:\n${problems.map((p) => `  ${file}: ${p}`).join('\n')}`);
    this.name = 'SpecError';
  }
}

export function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map(formatProblem);
}

/** Validates an already-parsed document; pure, so workflows and the CLI run the very same checks. */
export function parseSpec(document: unknown, file: string): ServiceSpec {
  const result = serviceSpecSchema.safeParse(document);
  if (!result.success) throw new SpecError(file, describeIssues(result.error.issues));
  const problems = policyProblems(result.data);
  if (problems.length) throw new SpecError(file, problems.map(formatProblem));
  return result.data;
}
