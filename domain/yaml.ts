/** YAML documents checked against a schema, every problem reported at once with its line and path in the file. */
import { isMap, isScalar, LineCounter, parseDocument, type YAMLError } from 'yaml';
import { formatProblem, SpecError, type SpecProblem } from './spec.js';

export interface Checked<T> {
  value?: T;
  problems: readonly SpecProblem[];
}

/**
 * Where a YAML syntax error is and what kind it is (the parser's code, such as BAD_INDENT), and nothing else: the
 * parser's message quotes the source around the error, and that line may hold a password.
 */
export function yamlSyntaxProblem(error: YAMLError, lineCounter: LineCounter): string {
  const { line, col } = lineCounter.linePos(error.pos[0]);
  return `line ${line}, column ${col}: YAML syntax error (${error.code})`;
}

/** Parses `text` (the content of `file`) and checks it; throws a SpecError naming file, line and path. */
export function parseYamlFile<T>(text: string, file: string, check: (document: unknown) => Checked<T>): T {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  if (document.errors.length)
    throw new SpecError(
      file,
      document.errors.map((e) => yamlSyntaxProblem(e, lineCounter)),
    );
  // A field is reported at its key's line; a missing one, which has no node of its own, at its closest parent's.
  const lineOf = (range?: readonly number[] | null) =>
    range?.[0] === undefined ? undefined : lineCounter.linePos(range[0]).line;
  const at = (path: PropertyKey[]) => {
    for (let depth = path.length; depth >= 0; depth--) {
      const parent = depth ? document.getIn(path.slice(0, depth - 1), true) : undefined;
      const pair = isMap(parent)
        ? parent.items.find((item) => isScalar(item.key) && item.key.value === path[depth - 1])
        : undefined;
      const node = depth ? document.getIn(path.slice(0, depth), true) : document.contents;
      const line =
        lineOf(isScalar(pair?.key) ? pair.key.range : undefined) ??
        lineOf((node as { range?: number[] } | null)?.range);
      if (line !== undefined) return `line ${line}: `;
    }
    return '';
  };
  const { value, problems } = check(document.toJS());
  if (value === undefined || problems.length)
    throw new SpecError(
      file,
      problems.map((p) => `${at(p.path)}${formatProblem(p)}`),
    );
  return value;
}
