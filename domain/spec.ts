import { z } from 'zod';
import { durationSchema } from './duration.js';
import { InvalidInput } from './failures.js';
import type { EnvironmentPolicy } from './policy.js';

/** Time budgets of a deploy's phases, in milliseconds: part of the product, enforced by workflow timers. */
export const DEFAULT_BUDGETS = {
  validate: 120_000,
  trackChanges: 30_000,
  environmentUpdate: 180_000,
  rollback: 300_000,
  report: 60_000,
} as const;
export type BudgetName = keyof typeof DEFAULT_BUDGETS;

/** DNS-label names: safe in container names, Kubernetes objects, workflow ids and search attributes alike. */
export const nameSchema = z.string({ error: 'expected a name' }).regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, {
  error: 'expected lowercase letters, digits and dashes (a DNS label)',
});

export const portSchema = z.int({ error: 'expected a port number (1-65535)' }).min(1).max(65535);

export const healthCheckSchema = z.strictObject({
  type: z.enum(['http', 'tcp']).default('http'),
  path: z.string().startsWith('/', { error: 'expected a path starting with /' }).default('/health'),
  timeout: durationSchema.default(2_000),
  interval: durationSchema.default(1_000),
  /** How long a new release has to become healthy before the deploy fails. */
  healthyWithin: durationSchema.default(60_000),
});

const envNameSchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' });

/** A Linux capability without its CAP_ prefix, as Docker and Kubernetes name them. */
export const capabilitySchema = z
  .string()
  .regex(/^[A-Z][A-Z_]*$/, { error: 'expected a capability like NET_BIND_SERVICE' });

/**
 * The container a Docker release runs. Everything beyond port and env departs from the safe default (an unprivileged,
 * capability-less container that cannot gain privileges, inside its limits); the security rules of the environment's
 * policy decide which departures are refused, flagged or allowed.
 */
export const containerSchema = z.strictObject({
  port: portSchema.default(8080),
  /** Plain settings: they reach reports and histories, so never secrets (see `secrets`). */
  env: z.record(z.string(), z.string()).default({}),
  /** Secrets by reference: variable name -> the name of a secret the platform policy defines; the worker reads it. */
  secrets: z.record(envNameSchema, nameSchema).default({}),
  resources: z
    .strictObject({
      /** Bytes, or with a unit: 256m, 1g (Docker) — 256Mi, 1Gi are read the same. */
      memory: z
        .string()
        .regex(/^[0-9]+(b|k|m|g|Ki|Mi|Gi)?$/, { error: 'expected a size like 256m or 1Gi' })
        .optional(),
      cpus: z.number().positive().max(256).optional(),
    })
    .default({}),
  /** The user the process runs as (name or uid[:gid]); absent means the image's own user. */
  user: z.string().min(1).max(64).optional(),
  privileged: z.boolean().default(false),
  /** Capabilities added to the dropped-all default. */
  capabilities: z.array(capabilitySchema).default([]),
  hostNetwork: z.boolean().default(false),
  hostPid: z.boolean().default(false),
  /**
   * How long a replaced or stopped container of this release gets between SIGTERM and SIGKILL, like Kubernetes'
   * terminationGracePeriodSeconds; whole seconds, as the engine keeps it on the container.
   */
  stopGracePeriod: durationSchema
    .refine((ms) => ms % 1000 === 0 && ms <= 300_000, { error: 'expected whole seconds, at most 5m' })
    .default(10_000),
  /** Host paths mounted into the container. */
  mounts: z
    .array(
      z.strictObject({
        source: z.string().startsWith('/', { error: 'expected an absolute host path' }),
        target: z.string().startsWith('/', { error: 'expected an absolute container path' }),
        readOnly: z.boolean().default(true),
      }),
    )
    .default([]),
});
export type ContainerSpec = z.infer<typeof containerSchema>;

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
    container: containerSchema.default(containerSchema.parse({})),
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
  })
  .superRefine((spec, context) => {
    if (spec.target === 'kubernetes' && !spec.release)
      context.addIssue({
        code: 'custom',
        path: ['release'],
        message: 'missing, expected release.manifests for the kubernetes target',
      });
  });

/**
 * Fields that belong to the platform policy, which only the worker reads. A spec that carries one is refused
 * naming it, rather than ignored: its author believes it has an effect.
 */
const POLICY_OWNED = [
  'environments',
  'approval',
  'approvers',
  'deployers',
  'protected',
  'rollbackRequiresApproval',
  'resolvers',
  'freezes',
  'breakGlass',
  'promotedFrom',
  'budgets',
  'historyLimit',
  'docker',
  'kubernetes',
  'kubeconfig',
  'context',
  'namespace',
  'host',
  'security',
  'secrets',
] as const;

export interface SpecProblem {
  path: PropertyKey[];
  message: string;
}

export const formatProblem = ({ path, message }: SpecProblem): string =>
  `${path.length ? path.map(String).join('.') : '(top level)'}: ${message.replace(MISSING, 'missing, expected $1')}`;

const MISSING = /^Invalid input: expected (\w+), received undefined$/;

/** Policy-owned fields a requester put in a service spec. */
function policyOwnedFields(document: unknown): SpecProblem[] {
  if (typeof document !== 'object' || document === null) return [];
  return POLICY_OWNED.filter((key) => Object.hasOwn(document, key)).map((key) => ({
    path: [key],
    message:
      'owned by the platform policy, not the service spec: environments, targets, credentials, approvals and ' +
      'budgets come from the policy the worker loads',
  }));
}

/**
 * Checks that need no network: the same in `deploy-agent validate` and the workflow's validation phase. Secret-looking
 * names are the security rules' to judge (security-rules/), per environment.
 */
export function specProblems(spec: ServiceSpec): SpecProblem[] {
  void spec;
  return [];
}

/** The suffix check runs replayed from before the security rules made, at admission and at validation. */
export function legacySecretEnvProblems(spec: ServiceSpec): SpecProblem[] {
  return Object.keys(spec.container.env)
    .filter((k) => SECRET_NAME.test(k))
    .map((key) => ({ path: ['container', 'env', key], message: SECRET_MESSAGE }));
}

const SECRET_MESSAGE =
  'looks like a secret; plain values end up in reports and histories, expected a non-secret setting';
const SECRET_NAME = /(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$/i;

export type ServiceSpec = z.infer<typeof serviceSpecSchema>;
export type HealthCheckSpec = z.infer<typeof healthCheckSchema>;
export type Budgets = Record<BudgetName, number>;

export const versionSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: 'expected a version usable as an image tag, like 1.4.2' });

/** Everything a deploy or rollback workflow needs about one environment of one service. */
export interface ServiceEnvironment {
  service: string;
  environment: string;
  spec: ServiceSpec;
  settings: EnvironmentPolicy;
  budgets: Budgets;
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

/** Every problem of a parsed document, or the spec: pure, so workflows and the CLI run the very same checks. */
export function checkSpec(document: unknown): { spec?: ServiceSpec; problems: SpecProblem[] } {
  const owned = policyOwnedFields(document);
  const cleaned =
    owned.length && typeof document === 'object' && document !== null
      ? Object.fromEntries(Object.entries(document).filter(([key]) => !owned.some((p) => p.path[0] === key)))
      : document;
  const result = serviceSpecSchema.safeParse(cleaned);
  if (!result.success) return { problems: [...owned, ...result.error.issues] };
  const problems = [...owned, ...specProblems(result.data)];
  return problems.length ? { problems } : { spec: result.data, problems };
}

export function parseSpec(document: unknown, file: string): ServiceSpec {
  const { spec, problems } = checkSpec(document);
  if (!spec) throw new SpecError(file, problems.map(formatProblem));
  return spec;
}
