/**
 * Security rules as data: a rule file holds CEL expressions over the objects a release would create, each true when
 * the release VIOLATES the rule (like a policy's `deny`). The shipped rules live in `security-rules/`; a platform adds
 * its own through the policy's `securityRules`, and sets each rule's action per environment under `security`.
 */
import { z } from 'zod';
import { ruleActionSchema, ruleIdSchema, type EnvironmentPolicy, type RuleAction } from './policy.js';

/**
 * What one evaluation of a rule looks at.
 * - Docker `container`: the effective container the driver would create (`object`).
 * - Kubernetes `container`: each container and initContainer of every pod template (`container`, with `podSpec`
 *   and the manifest as `object`); `pod`: each pod template (`podSpec`, `object`); `object`: each manifest
 *   (`object`); `namespace`: the release's namespace as the cluster has it (`namespace`).
 */
export const inspectedSchema = z.enum(['container', 'pod', 'object', 'namespace'], {
  error: 'expected container, pod, object or namespace',
});
export type Inspected = z.infer<typeof inspectedSchema>;

const celSchema = z.string({ error: 'expected a CEL expression' }).min(1, { error: 'expected a CEL expression' });

/** How a rule applies to one target kind. */
export const ruleCheckSchema = z.strictObject({
  inspects: inspectedSchema,
  /**
   * True (or a non-empty list) when the rule is violated. A list names the offending items, one finding each, and
   * `{item}` in `field` and `message` stands for the item: return names, never values.
   */
  violation: celSchema,
  /**
   * The field a finding names. For Kubernetes `container` and `pod` it is relative to the container or pod spec;
   * the engine prefixes the path to it (`spec.template.spec.containers[0].`).
   */
  field: z.string().min(1),
  message: z.string().min(1),
});
export type RuleCheck = z.infer<typeof ruleCheckSchema>;

/** An environment kind: a `protected: true` environment of the policy, or any other. */
export const environmentKinds = ['protected', 'other'] as const;
export type EnvironmentKind = (typeof environmentKinds)[number];

export const securityRuleSchema = z
  .strictObject({
    id: ruleIdSchema,
    description: z.string().min(1),
    /** The action when the environment's policy does not say: per environment kind. */
    actions: z.strictObject({ protected: ruleActionSchema, other: ruleActionSchema }),
    /**
     * Findings the CLI refuses before it starts a deployment, whatever the environment: what they flag would be in
     * the deployment's history before the worker's policy is asked (a secret's value in the spec).
     */
    beforeStart: z.boolean().default(false),
    docker: ruleCheckSchema.optional(),
    kubernetes: ruleCheckSchema.optional(),
  })
  .superRefine((rule, context) => {
    if (!rule.docker && !rule.kubernetes)
      context.addIssue({ code: 'custom', path: [], message: 'expected docker or kubernetes: where the rule applies' });
    if (rule.docker && rule.docker.inspects !== 'container')
      context.addIssue({
        code: 'custom',
        path: ['docker', 'inspects'],
        message: 'expected container: a Docker release is one container',
      });
  });
export type SecurityRule = z.infer<typeof securityRuleSchema>;

export const ruleFileSchema = z.strictObject({
  /** Values the file's expressions share, as `constants.<name>`. */
  constants: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
  rules: z.array(securityRuleSchema).min(1, { error: 'expected at least one rule' }),
});
export type RuleFile = z.infer<typeof ruleFileSchema>;

/** A rule's action in force: deny refuses the release, warn reports the finding. */
export const findingActionSchema = z.enum(['deny', 'warn']);

/** One violation: which rule, on which object, at which field, what happens, and why. Names and paths, never values. */
export const securityFindingSchema = z.object({
  rule: ruleIdSchema,
  /** `Deployment/web`, `Namespace/shop`, `container web-shop_prod`. */
  object: z.string(),
  /** `spec.template.spec.containers[0].securityContext.privileged`, `container.privileged`. */
  field: z.string(),
  action: findingActionSchema,
  message: z.string(),
});
export type SecurityFinding = z.infer<typeof securityFindingSchema>;

/** What the workflow tells the security check about the environment: its kind and its overrides. */
export interface SecuritySettings {
  protected: boolean;
  /** rule id -> action, from the policy's `environments.<env>.security`. */
  overrides: Record<string, RuleAction>;
}

export const securitySettingsOf = (environment: EnvironmentPolicy): SecuritySettings => ({
  protected: environment.protected,
  overrides: environment.security,
});

/** The action of a rule in an environment: the policy's override, else the rule's default for the kind. */
export function actionOf(rule: Pick<SecurityRule, 'id' | 'actions'>, settings: SecuritySettings): RuleAction {
  return settings.overrides[rule.id] ?? rule.actions[settings.protected ? 'protected' : 'other'];
}

export const describeFinding = (f: SecurityFinding): string => `${f.rule}: ${f.object} ${f.field}: ${f.message}`;
