/**
 * The security rules a spec alone can answer, for the CLI: `deploy-agent validate` shows them with the actions they
 * take by default, and every verb that sends a spec refuses the findings of `beforeStart` rules (a secret's value
 * would be in the deployment's history before the worker's policy could refuse it).
 */
import type { SecurityFinding } from '../../domain/security.js';
import type { ServiceSpec, SpecProblem } from '../../domain/spec.js';
import { evaluateRules } from './evaluate.js';
import { dockerObjectOfSpec } from './docker-input.js';
import type { CompiledRule } from './rules.js';

/** Findings of the Docker rules over the spec's container, as they would be in a protected environment. */
export function offlineFindings(rules: readonly CompiledRule[], spec: ServiceSpec): SecurityFinding[] {
  if (spec.target !== 'docker') return [];
  // Unknown offline: the version (a deploy's argument) and the image's own user, which only the registry knows.
  const container = { ...dockerObjectOfSpec(spec, '0'), imageUser: 'image' };
  return evaluateRules(rules, { kind: 'docker', container }, { protected: true, overrides: {} });
}

/** Findings refused before anything is sent, as spec problems at the field they name. */
export function beforeStartProblems(rules: readonly CompiledRule[], spec: ServiceSpec): SpecProblem[] {
  const refused = new Set(rules.filter((rule) => rule.beforeStart).map((rule) => rule.id));
  return offlineFindings(rules, spec)
    .filter((finding) => refused.has(finding.rule))
    .map((finding) => ({ path: finding.field.split('.'), message: finding.message }));
}
