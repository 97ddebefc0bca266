/**
 * The platform policy, read from the worker's own file at each admission: a new deployment is judged by the policy
 * as it is now, and keeps it (it is in the history) until it ends. Also the deployment history promotion reads.
 */
import { createHash } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { dirname, isAbsolute, resolve, sep } from 'node:path';
import { Context } from '@temporalio/activity';
import { fail } from '../domain/failures.js';
import { type AdmittedPolicy, checkPolicy, type PlatformPolicy } from '../domain/policy.js';
import { type ServiceSpec, SpecError } from '../domain/spec.js';
import { parseYamlFile } from '../domain/yaml.js';
import { type CompiledRule, loadRuleSet, SHIPPED_RULE_FILES } from './security/rules.js';
import { deploymentIdOf } from '../domain/deployment.js';

const VISIBILITY_ATTEMPTS = 3;

export interface LoadedPolicy {
  file: string;
  /** sha256 of the policy file and every security rule file it judges by. */
  hash: string;
  policy: PlatformPolicy;
  /** The shipped security rules and the policy's own, compiled. */
  rules: CompiledRule[];
}

/** Reads and checks a policy file; a bad one is a SpecError naming the file, the line and the path. */
export async function loadPolicyFile(file: string): Promise<LoadedPolicy> {
  const bytes = await readFile(file).catch((error: unknown) => {
    throw new SpecError(file, [`cannot be read: ${(error as Error).message}`]);
  });
  const policy = parseYamlFile(bytes.toString('utf8'), file, checkPolicy);
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  policy.sourceRoots = policy.sourceRoots.map(absolute);
  policy.securityRules = policy.securityRules.map(absolute);
  const rules = await loadRuleSet(policy.securityRules);
  const unknown = Object.entries(policy.environments).flatMap(([name, env]) =>
    Object.keys(env.security)
      .filter((id) => !rules.some((rule) => rule.id === id))
      .map((id) => `environments.${name}.security.${id}: unknown rule id`),
  );
  if (unknown.length)
    throw new SpecError(
      file,
      unknown.map((problem) => `${problem}, expected one of ${rules.map((rule) => rule.id).join(', ')}`),
    );
  for (const env of Object.values(policy.environments)) {
    if (env.kubernetes?.kubeconfig) env.kubernetes.kubeconfig = absolute(env.kubernetes.kubeconfig);
    if (env.docker?.tls)
      env.docker.tls = {
        ca: absolute(env.docker.tls.ca),
        cert: absolute(env.docker.tls.cert),
        key: absolute(env.docker.tls.key),
      };
    for (const source of Object.values(env.secrets)) if ('file' in source) source.file = absolute(source.file);
  }
  // The rules judge releases as much as the policy does: the hash a report names covers every rule file too.
  const hash = createHash('sha256').update(bytes);
  for (const ruleFile of [...SHIPPED_RULE_FILES, ...policy.securityRules]) hash.update(await readFile(ruleFile));
  return { file, hash: hash.digest('hex'), policy, rules };
}

export interface AdmissionQuery {
  service: string;
  environment: string;
  spec: ServiceSpec;
}

export interface PromotionQuery {
  service: string;
  /** The environment the version must have succeeded in. */
  environment: string;
  version: string;
}

export function policyActivities(policyFile: string) {
  return {
    /** The policy of one environment, once the spec is known to fit it: a target it describes, paths it allows. */
    async loadPolicy({ service, environment, spec }: AdmissionQuery): Promise<AdmittedPolicy> {
      const { policy, hash } = await loadPolicyFile(policyFile).catch((error: unknown) => {
        throw fail('invalid', `the platform policy cannot be used: ${(error as Error).message}`);
      });
      const settings = policy.environments[environment];
      if (!settings)
        throw fail(
          'invalid',
          `environment ${environment} is not defined by the platform policy ` +
            `(defined: ${Object.keys(policy.environments).join(', ')})`,
        );
      if (!settings[spec.target])
        throw fail('invalid', `the platform policy has no ${spec.target} target for ${environment}`);
      if (spec.target === 'docker' && settings.docker?.ports[service] === undefined)
        throw fail(
          'invalid',
          `the platform policy publishes no port for ${service} in ${environment} ` +
            `(environments.${environment}.docker.ports.${service})`,
        );
      for (const [field, path] of [
        ['release.manifests', spec.release?.manifests],
        ['source.repository', spec.source?.repository],
      ] as const)
        if (path !== undefined) await refuseOutsideRoots(field, path, policy.sourceRoots);
      return { hash, environment: settings, identity: policy.identity };
    },

    /** The deployment that put this version live in that environment successfully, from Temporal's visibility. */
    async findPromotion({ service, environment, version }: PromotionQuery): Promise<string | undefined> {
      // Values are DNS labels and tag-safe versions (checked by the workflow), so they cannot break the query.
      const query =
        `WorkflowType = 'deployWorkflow' AND DeployService = '${service}' AND DeployEnvironment = '${environment}' ` +
        `AND DeployVersion = '${version}' AND DeployStatus = 'succeeded'`;
      // Visibility is written a moment after a run closes: a success that just happened is looked for again.
      for (let attempt = 1; ; attempt++) {
        for await (const run of Context.current().client.workflow.list({ query, pageSize: 1 }))
          return deploymentIdOf(run.workflowId, run.runId);
        if (attempt === VISIBILITY_ATTEMPTS) return undefined;
        await Context.current().sleep(1_000);
      }
    },
  };
}

async function refuseOutsideRoots(field: string, path: string, roots: readonly string[]): Promise<void> {
  const real = await realpath(path).catch(() => {
    throw fail('invalid', `${field} ${path} does not exist on the worker`);
  });
  for (const root of roots) {
    const realRoot = await realpath(root).catch(() => undefined);
    if (realRoot && (real === realRoot || real.startsWith(realRoot + sep))) return;
  }
  throw fail(
    'forbidden',
    `${field} ${path} is outside the directories the platform policy lets the worker read (sourceRoots: ${roots.join(', ') || 'none'})`,
  );
}
