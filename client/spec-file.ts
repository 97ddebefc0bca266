import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import {
  formatProblem,
  policyProblems,
  type ServiceSpec,
  serviceSpecSchema,
  type SpecProblem,
  SpecError,
} from '../domain/spec.js';

export interface LoadedSpec {
  file: string;
  /** The spec with every path in it made absolute: the worker does not know where the file was. */
  spec: ServiceSpec;
}

/** Reads deploy.yaml: every problem is reported at once, each with its line, the path in the file and what was expected. */
export async function loadSpecFile(file: string): Promise<LoadedSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SpecError(file, [`cannot be read: ${(error as Error).message}`]);
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  if (document.errors.length)
    throw new SpecError(
      file,
      document.errors.map(
        (e) => `line ${lineCounter.linePos(e.pos[0]).line}: YAML syntax: ${e.message.split('\n')[0]}`,
      ),
    );
  // A missing field has no node of its own: it is reported at the closest enclosing one.
  const at = (path: PropertyKey[]) => {
    for (let depth = path.length; depth >= 0; depth--) {
      const node = (depth ? document.getIn(path.slice(0, depth), true) : document.contents) as {
        range?: number[];
      } | null;
      if (node?.range?.[0] !== undefined) return `line ${lineCounter.linePos(node.range[0]).line}: `;
    }
    return '';
  };
  const located = (problems: readonly SpecProblem[]) => problems.map((p) => `${at(p.path)}${formatProblem(p)}`);
  const result = serviceSpecSchema.safeParse(document.toJS());
  if (!result.success) throw new SpecError(file, located(result.error.issues));
  const spec = result.data;
  const problems = policyProblems(spec);
  if (problems.length) throw new SpecError(file, located(problems));
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  if (spec.source) spec.source.repository = absolute(spec.source.repository);
  if (spec.release) spec.release.manifests = absolute(spec.release.manifests);
  for (const env of Object.values(spec.environments))
    if (env.kubernetes?.kubeconfig) env.kubernetes.kubeconfig = absolute(env.kubernetes.kubeconfig);
  return { file, spec };
}
