/**
 * Rule files: read, checked against their schema, and every CEL expression compiled, so that a rule that cannot run
 * stops the worker when it loads its policy rather than a deploy at validation.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Environment } from '@marcbachmann/cel-js';
import { ruleFileSchema, type RuleCheck, type SecurityRule } from '../../domain/security.js';
import { SpecError } from '../../domain/spec.js';
import { parseYamlFile } from '../../domain/yaml.js';

/** The rules every installation starts with; `security-rules/` at the top of the package. */
export const SHIPPED_RULE_FILES = [fileURLToPath(new URL('../../../security-rules/default.yaml', import.meta.url))];

/** The variables an expression may read; `namespace` is a reserved word in CEL, hence `namespaceObject`. */
const VARIABLES = ['object', 'container', 'podSpec', 'namespaceObject', 'constants'] as const;

const celEnvironment = VARIABLES.reduce(
  (env, name) => env.registerVariable(name, 'dyn'),
  // Optional field access (`a.?b.orValue(x)`) as Kubernetes' CEL has it: manifests leave most fields out.
  new Environment({ enableOptionalTypes: true, homogeneousAggregateLiterals: false }),
);

export type Evaluate = (variables: Record<string, unknown>) => unknown;

export interface CompiledCheck extends RuleCheck {
  evaluate: Evaluate;
}

export interface CompiledRule extends Omit<SecurityRule, 'docker' | 'kubernetes'> {
  /** The file the rule came from, for messages. */
  file: string;
  docker?: CompiledCheck;
  kubernetes?: CompiledCheck;
}

/** Compiles one expression; a syntax or type error is thrown with the expression's own message (no values). */
export function compileExpression(expression: string, constants: Record<string, string>): Evaluate {
  const program = celEnvironment.parse(expression);
  const checked = program.check();
  if (!checked.valid) throw checked.error ?? new Error('does not type-check');
  return (variables): unknown => program({ ...variables, constants }) as unknown;
}

/** Reads and compiles one rule file; a problem is a SpecError naming the file, the line and the field. */
export async function loadRuleFile(file: string): Promise<CompiledRule[]> {
  const text = await readFile(file, 'utf8').catch((error: unknown) => {
    throw new SpecError(file, [`cannot be read: ${(error as Error).message}`]);
  });
  const parsed = parseYamlFile(text, file, (document) => {
    const result = ruleFileSchema.safeParse(document);
    return result.success ? { value: result.data, problems: [] } : { problems: result.error.issues };
  });
  const problems: string[] = [];
  const rules = parsed.rules.map((rule, index) => {
    const compile = (target: 'docker' | 'kubernetes'): CompiledCheck | undefined => {
      const check = rule[target];
      if (!check) return undefined;
      try {
        return { ...check, evaluate: compileExpression(check.violation, parsed.constants) };
      } catch (error) {
        const reason = (error as Error).message.split('\n')[0];
        problems.push(`rules.${index}.${target}.violation (${rule.id}): expected a CEL expression: ${reason}`);
        return undefined;
      }
    };
    return { ...rule, file, docker: compile('docker'), kubernetes: compile('kubernetes') };
  });
  if (problems.length) throw new SpecError(file, problems);
  return rules;
}

/** The shipped rules and a policy's own, each id once. */
export async function loadRuleSet(extraFiles: readonly string[]): Promise<CompiledRule[]> {
  const rules: CompiledRule[] = [];
  for (const file of [...SHIPPED_RULE_FILES, ...extraFiles]) {
    for (const rule of await loadRuleFile(file)) {
      const first = rules.find((r) => r.id === rule.id);
      if (first)
        throw new SpecError(file, [
          `rule ${rule.id}: the id is already taken by a rule of ${first.file}; expected a unique rule id`,
        ]);
      rules.push(rule);
    }
  }
  return rules;
}
