/** YAML documents checked against a schema, every problem reported at once with its line and path in the file. */
import { type Document, isMap, isScalar, LineCounter, parseDocument, visit, type YAMLError } from 'yaml';
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

/**
 * The document's value, or where it cannot become one: an alias that names no anchor (`password: *s3cret` is one),
 * or aliases beyond the parser's limit. The parser's own message would name the alias, that is quote the file.
 */
export function yamlValueOf(
  document: Document.Parsed,
  lineCounter: LineCounter,
): { value: unknown } | { problem: string } {
  try {
    return { value: document.toJS() };
  } catch (error) {
    let at = '';
    visit(document, {
      Alias(_, node) {
        if (node.resolve(document) !== undefined || !node.range) return undefined;
        const { line, col } = lineCounter.linePos(node.range[0]);
        at = `line ${line}, column ${col}: `;
        return visit.BREAK;
      },
    });
    const kind = at ? 'an alias that names no anchor' : (error as Error).name;
    return { problem: `${at}YAML alias error (${kind})` };
  }
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
  const plain = yamlValueOf(document, lineCounter);
  if ('problem' in plain) throw new SpecError(file, [plain.problem]);
  const { value, problems } = check(plain.value);
  if (value === undefined || problems.length)
    throw new SpecError(
      file,
      problems.map((p) => `${at(p.path)}${formatProblem(p)}`),
    );
  return value;
}
