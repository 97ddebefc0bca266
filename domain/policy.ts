/**
 * The platform policy: what the platform team decides and a requester cannot. Per environment, how to reach the
 * target and with which credentials, who may deploy, approve, authorize rollbacks and resolve, freeze windows and
 * promotion order. The worker loads it from its own file; a deployment keeps the policy it started with.
 */
import { z } from 'zod';
import { durationSchema } from './duration.js';
import { identitySettingsSchema } from './identity.js';
import { DEFAULT_BUDGETS, nameSchema, portSchema, type Budgets, type SpecProblem } from './spec.js';

const DEFAULT_APPROVAL_DEADLINE = 24 * 3_600_000;

/** A user name, or `group:<name>` for every member of a group. */
const principalSchema = z
  .string()
  .regex(/^(group:)?[^\s:][^\s]*$/, { error: 'expected a user name or group:<name>' })
  .max(200);
const principalsSchema = z.array(principalSchema);

const budgetsSchema = z.strictObject({
  validate: durationSchema.optional(),
  trackChanges: durationSchema.optional(),
  environmentUpdate: durationSchema.optional(),
  rollback: durationSchema.optional(),
  report: durationSchema.optional(),
});

const dockerTlsSchema = z.strictObject({
  /** Paths, relative to the policy file: the engine's CA and the worker's client certificate and key. */
  ca: z.string().min(1),
  cert: z.string().min(1),
  key: z.string().min(1),
});

export const dockerEnvironmentSchema = z.strictObject({
  /** Docker engine address, e.g. unix:///var/run/docker.sock or tcp://10.0.0.5:2376. */
  host: z.string().regex(/^(unix|tcp|http|https):\/\//, { error: 'expected unix://PATH or tcp://HOST:PORT' }),
  tls: dockerTlsSchema.optional(),
  hostIp: z.ipv4().default('127.0.0.1'),
  /** The host port each service's container port is published on here; a service without one cannot deploy here. */
  ports: z.record(nameSchema, portSchema).default({}),
  /** Settings every service's container gets in this environment (never secrets: they reach reports). */
  env: z.record(z.string(), z.string()).default({}),
});

export const kubernetesEnvironmentSchema = z.strictObject({
  /** The worker's kubeconfig for this cluster, relative to the policy file; KUBECONFIG or ~/.kube/config when absent. */
  kubeconfig: z.string().min(1).optional(),
  context: z.string().min(1).optional(),
  /** The one namespace releases of this environment live in. */
  namespace: nameSchema,
  /**
   * Whether apply may take over an existing object that no deploy-agent release of this service and environment
   * owns (like `helm install --take-ownership`); off, such an object stops the release before anything changes.
   */
  adoptExisting: z.boolean().default(false),
  /**
   * Kinds a restore may write besides the default workload and configuration kinds, as `Kind` (core group) or
   * `Kind.group` (`Role.rbac.authorization.k8s.io`); a revision holding any other kind is refused.
   */
  restorableKinds: z
    .array(
      z
        .string()
        .regex(/^[A-Z][A-Za-z0-9]*(\.[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$/, { error: 'expected Kind or Kind.group' }),
    )
    .default([]),
  /** A kubeconfig whose user runs a program (exec, auth-provider) is refused unless allowed here. */
  allowExecCredentials: z.boolean().default(false),
});

/** What a security rule's finding does in an environment: refuse the release, report it, or nothing. */
export const ruleActionSchema = z.enum(['deny', 'warn', 'off'], { error: 'expected deny, warn or off' });
export type RuleAction = z.infer<typeof ruleActionSchema>;

/** A security rule's id, as its rule file names it. */
export const ruleIdSchema = z
  .string()
  .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, { error: 'expected a rule id like no-privileged' });

/** Where the worker reads a secret's value: a file or one of its own environment variables; never the spec. */
export const secretSourceSchema = z
  .union([
    z.strictObject({ file: z.string().min(1), services: z.array(nameSchema).optional() }),
    z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), services: z.array(nameSchema).optional() }),
  ])
  .describe('{file: PATH} or {env: VARIABLE}, with optional services: [names allowed to use it]');
export type SecretSource = z.infer<typeof secretSourceSchema>;

export const approvalPolicySchema = z.strictObject({
  required: z.int().min(0).max(10).default(0),
  approvers: principalsSchema.default([]),
  deadline: durationSchema.default(DEFAULT_APPROVAL_DEADLINE),
});

const freezeSchema = z.strictObject({
  from: z.iso.datetime({ offset: true, error: 'expected an ISO date and time, like 2026-12-24T00:00:00Z' }),
  until: z.iso.datetime({ offset: true, error: 'expected an ISO date and time, like 2026-12-27T00:00:00Z' }),
  reason: z.string().min(1),
});

export const environmentPolicySchema = z.strictObject({
  docker: dockerEnvironmentSchema.optional(),
  kubernetes: kubernetesEnvironmentSchema.optional(),
  /** Who may request deploys and rollbacks; empty means every verified identity. */
  deployers: principalsSchema.default([]),
  approval: approvalPolicySchema.default({ required: 0, approvers: [], deadline: DEFAULT_APPROVAL_DEADLINE }),
  /** Production restrictions: a protected environment needs approvals, named deployers and named resolvers. */
  protected: z.boolean().default(false),
  /** Manual rollbacks need one approver's authorization. */
  rollbackRequiresApproval: z.boolean().default(false),
  /** Who may retry or abandon a failed compensation; empty means the environment's approvers and deployers. */
  resolvers: principalsSchema.default([]),
  /** No deploys or rollbacks in these windows, unless a break-glass principal overrides one, audited. */
  freezes: z.array(freezeSchema).default([]),
  breakGlass: principalsSchema.default([]),
  /** Promotion order: a version must have succeeded in this environment before it may deploy here. */
  promotedFrom: nameSchema.optional(),
  budgets: budgetsSchema.default({}),
  /** Security rules: each rule's action here, overriding the default its rule file gives (deny, warn or off). */
  security: z.record(ruleIdSchema, ruleActionSchema).default({}),
  /** Secrets services may reference by name; their values are read by the worker and never leave it. */
  secrets: z.record(nameSchema, secretSourceSchema).default({}),
  /** How many replaced releases are kept on the target as rollback points. */
  historyLimit: z.int().min(1).max(50).default(5),
});

export const platformPolicySchema = z
  .strictObject({
    identity: identitySettingsSchema,
    /**
     * Directories the worker may read release manifests and source repositories from, relative to the policy file:
     * a spec naming a path elsewhere is refused, so a requester cannot make the worker read its other files.
     */
    sourceRoots: z.array(z.string().min(1)).default([]),
    /** Security rule files beyond the ones shipped, relative to the policy file; a rule id may appear only once. */
    securityRules: z.array(z.string().min(1)).default([]),
    /**
     * Who may read payloads through the codec server (Temporal Web UI, `temporal --codec-endpoint`): users and
     * groups with a verified token. Empty means nobody: payloads stay ciphertext outside the workers and the CLI.
     */
    payloadReaders: principalsSchema.default([]),
    environments: z
      .record(nameSchema, environmentPolicySchema)
      .refine((envs) => Object.keys(envs).length > 0, { error: 'expected at least one environment' }),
  })
  .superRefine((policy, context) => {
    for (const problem of policyProblems(policy)) context.addIssue({ code: 'custom', ...problem });
  });

export type PlatformPolicy = z.infer<typeof platformPolicySchema>;
export type EnvironmentPolicy = z.infer<typeof environmentPolicySchema>;
export type ApprovalPolicy = z.infer<typeof approvalPolicySchema>;
export type Freeze = z.infer<typeof freezeSchema>;

/** Rules across fields: what a zod shape alone cannot say. */
function policyProblems(policy: Pick<PlatformPolicy, 'environments'>): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const namespaces = new Map<string, string>();
  for (const [name, env] of Object.entries(policy.environments)) {
    const at = (...path: string[]) => ['environments', name, ...path];
    if (!env.docker && !env.kubernetes)
      problems.push({ path: at(), message: 'expected docker or kubernetes: how the worker reaches this environment' });
    if (env.approval.required > env.approval.approvers.length)
      problems.push({ path: at('approval', 'approvers'), message: 'needs at least as many approvers as required' });
    if (env.protected && env.approval.required < 1)
      problems.push({ path: at('approval', 'required'), message: 'a protected environment needs at least 1 approval' });
    if (env.protected && env.deployers.length === 0)
      problems.push({ path: at('deployers'), message: 'a protected environment needs a list of who may deploy' });
    if (env.rollbackRequiresApproval && env.approval.approvers.length === 0)
      problems.push({ path: at('approval', 'approvers'), message: 'rollback authorization needs an approver' });
    if (env.promotedFrom !== undefined && !policy.environments[env.promotedFrom])
      problems.push({ path: at('promotedFrom'), message: `expected an environment of this policy` });
    for (const [index, freeze] of env.freezes.entries())
      if (Date.parse(freeze.until) <= Date.parse(freeze.from))
        problems.push({ path: at('freezes', String(index), 'until'), message: 'expected a time after from' });
    if (env.kubernetes) {
      // Two environment names for one namespace would run two deployments side by side on the same objects.
      const place = `${env.kubernetes.kubeconfig ?? ''}|${env.kubernetes.context ?? ''}|${env.kubernetes.namespace}`;
      const other = namespaces.get(place);
      if (other)
        problems.push({ path: at('kubernetes', 'namespace'), message: `the same namespace as environment ${other}` });
      namespaces.set(place, name);
    }
  }
  return problems;
}

export function budgetsOf(environment: EnvironmentPolicy): Budgets {
  const set = Object.entries(environment.budgets).filter(([, v]) => v !== undefined);
  return { ...DEFAULT_BUDGETS, ...Object.fromEntries(set) };
}

/** The freeze window `at` falls in, if any. */
export function activeFreeze(environment: EnvironmentPolicy, at: Date): Freeze | undefined {
  const now = at.getTime();
  return environment.freezes.find((f) => Date.parse(f.from) <= now && now < Date.parse(f.until));
}

/** What a workflow gets from the worker's policy for one environment: the part it judges by, and its fingerprint. */
export interface AdmittedPolicy {
  /** sha256 of the policy file's bytes: recorded in the history and the report. */
  hash: string;
  environment: EnvironmentPolicy;
  identity: PlatformPolicy['identity'];
}

/** Every problem of a parsed policy document, or the policy. */
export function checkPolicy(document: unknown): { value?: PlatformPolicy; problems: SpecProblem[] } {
  const result = platformPolicySchema.safeParse(document);
  return result.success ? { value: result.data, problems: [] } : { problems: result.error.issues };
}
