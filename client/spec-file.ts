import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { beforeStartProblems } from '../activities/security/offline.js';
import { loadRuleSet } from '../activities/security/rules.js';
import { checkSpec, type ServiceSpec, SpecError } from '../domain/spec.js';
import { parseYamlFile } from '../domain/yaml.js';

export interface LoadedSpec {
  file: string;
  spec: ServiceSpec;
  /** The document as written, paths made absolute: what the request carries, for the workflow to parse itself. */
  document: Record<string, unknown>;
}

/** Reads deploy.yaml: every problem is reported at once, each with its line, the path in the file and what was expected. */
export async function loadSpecFile(file: string): Promise<LoadedSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new SpecError(file, [`cannot be read: ${(error as Error).message}`]);
  }
  const rules = await loadRuleSet([]);
  const checked = parseYamlFile(text, file, (document) => {
    const { spec, problems } = checkSpec(document);
    const refused = spec ? beforeStartProblems(rules, spec) : [];
    return {
      value: spec && !refused.length ? { spec, document: document as Record<string, unknown> } : undefined,
      problems: [...problems, ...refused],
    };
  });
  // The worker does not know where the file was: paths in it are sent absolute.
  const absolute = (path: string) => (isAbsolute(path) ? path : resolve(dirname(file), path));
  const { spec, document } = checked;
  if (spec.source) spec.source.repository = absolute(spec.source.repository);
  if (spec.release) spec.release.manifests = absolute(spec.release.manifests);
  const source = document.source as Record<string, unknown> | undefined;
  const release = document.release as Record<string, unknown> | undefined;
  if (source && spec.source) source.repository = spec.source.repository;
  if (release && spec.release) release.manifests = spec.release.manifests;
  return { file, spec, document };
}
