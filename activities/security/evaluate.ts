/**
 * Evaluation of compiled rules over what a release would create: pure, so the worker's check, the CLI's offline
 * check and the unit tests run the very same code. A rule that cannot be evaluated on an object is a finding with
 * the rule's action: an expression that fails must not let a release through.
 */
import { actionOf, type SecurityFinding, type SecuritySettings } from '../../domain/security.js';
import type { CompiledCheck, CompiledRule } from './rules.js';

/** The Docker container the driver would create, as the rules read it (`object`); names, never secret values. */
export interface DockerSecurityObject {
  name: string;
  image: string;
  version: string;
  user: string;
  /** The image's own USER; '' when it sets none or it could not be read. */
  imageUser: string;
  privileged: boolean;
  capabilities: string[];
  hostNetwork: boolean;
  hostPid: boolean;
  mounts: { source: string; target: string; readOnly: boolean }[];
  /** Bytes; 0 is no limit. */
  memory: number;
  /** CPUs; 0 is no limit. */
  cpus: number;
  /** Variable names. */
  env: string[];
}

export type Manifest = Record<string, unknown> & { kind: string; metadata: { name: string } & Record<string, unknown> };

export type SecurityInput =
  | { kind: 'docker'; container: DockerSecurityObject }
  | {
      kind: 'kubernetes';
      objects: Manifest[];
      /** The namespace as the cluster has it; absent offline, where namespace rules are not evaluated. */
      namespaceObject?: { metadata: { name: string; labels?: Record<string, string> } };
    };

interface Subject {
  object: string;
  /** Prefix of the rule's relative field. */
  at: string;
  /** Prefix of the message, such as the container's name. */
  about: string;
  variables: Record<string, unknown>;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Where a kind keeps its pod template's spec. */
function podSpecPath(kind: string): string[] {
  if (kind === 'Pod') return ['spec'];
  if (kind === 'CronJob') return ['spec', 'jobTemplate', 'spec', 'template', 'spec'];
  return ['spec', 'template', 'spec'];
}

function podSpecOf(object: Manifest): { spec: Record<string, unknown>; path: string } | undefined {
  const keys = podSpecPath(object.kind);
  const spec = keys.reduce<unknown>((value, key) => (isRecord(value) ? value[key] : undefined), object);
  return isRecord(spec) ? { spec, path: keys.join('.') } : undefined;
}

function kubernetesSubjects(input: Extract<SecurityInput, { kind: 'kubernetes' }>, inspects: string): Subject[] {
  if (inspects === 'namespace')
    return input.namespaceObject
      ? [
          {
            object: `Namespace/${input.namespaceObject.metadata.name}`,
            at: '',
            about: '',
            variables: { namespaceObject: input.namespaceObject },
          },
        ]
      : [];
  const subjects: Subject[] = [];
  for (const object of input.objects) {
    const name = `${object.kind}/${object.metadata.name}`;
    if (inspects === 'object') {
      subjects.push({ object: name, at: '', about: '', variables: { object } });
      continue;
    }
    const pod = podSpecOf(object);
    if (!pod) continue;
    if (inspects === 'pod') {
      subjects.push({ object: name, at: `${pod.path}.`, about: '', variables: { object, podSpec: pod.spec } });
      continue;
    }
    for (const list of ['initContainers', 'containers']) {
      const containers = Array.isArray(pod.spec[list]) ? (pod.spec[list] as unknown[]) : [];
      for (const [index, container] of containers.entries())
        if (isRecord(container))
          subjects.push({
            object: name,
            at: `${pod.path}.${list}[${index}].`,
            about: `container ${typeof container.name === 'string' ? container.name : index}: `,
            variables: { object, podSpec: pod.spec, container },
          });
    }
  }
  return subjects;
}

function subjectsOf(input: SecurityInput, check: CompiledCheck): Subject[] {
  if (input.kind === 'docker')
    return [{ object: `container ${input.container.name}`, at: '', about: '', variables: { object: input.container } }];
  return kubernetesSubjects(input, check.inspects);
}

/** The items a violation names: true is one finding without item, a list one per item. */
function violations(result: unknown): string[] {
  if (result === true) return [''];
  if (result === false) return [];
  if (Array.isArray(result)) return result.map((item) => (typeof item === 'string' ? item : JSON.stringify(item)));
  throw new Error(`expected a bool or a list, the expression gave ${typeof result}`);
}

const fill = (text: string, item: string): string => text.replaceAll('{item}', item);

/** Every finding of the rules in force in an environment; rules that are off are not evaluated. */
export function evaluateRules(
  rules: readonly CompiledRule[],
  input: SecurityInput,
  settings: SecuritySettings,
): SecurityFinding[] {
  const findings: SecurityFinding[] = [];
  for (const rule of rules) {
    const check = rule[input.kind];
    const action = actionOf(rule, settings);
    if (!check || action === 'off') continue;
    for (const subject of subjectsOf(input, check)) {
      const finding = (field: string, message: string) =>
        findings.push({ rule: rule.id, object: subject.object, field, action, message: subject.about + message });
      let items: string[];
      try {
        items = violations(check.evaluate(subject.variables));
      } catch (error) {
        const reason = (error as Error).message.split('\n')[0] ?? 'unknown error';
        finding(subject.at + check.field.replaceAll('{item}', '*'), `the rule could not be evaluated: ${reason}`);
        continue;
      }
      for (const item of items) finding(subject.at + fill(check.field, item), fill(check.message, item));
    }
  }
  return findings;
}
