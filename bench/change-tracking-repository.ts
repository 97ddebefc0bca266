/**
 * A long real history for the change-tracking benchmark, written by `git fast-import` in one stream: thousands of
 * `git commit` calls would take longer than everything they are built to measure. Each commit changes a line or
 * two of one to three source files; now and then one adds a file or deletes one. The first commit is tagged v1.0.0,
 * the last v2.0.0.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const FIRST_TAG = 'v1.0.0';
export const LAST_TAG = 'v2.0.0';
const MODULES = 40;
const FILES_PER_MODULE = 25;
const EPOCH = 1_700_000_000;

/** Deterministic pseudo-random numbers, so every run builds the same history. */
function numbers(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

const pathOf = (file: number): string =>
  `src/module-${String(file % MODULES).padStart(2, '0')}/file-${String(Math.floor(file / MODULES)).padStart(3, '0')}.ts`;

function source(file: number, revision: number): string {
  const lines = [`// ${pathOf(file)}`, `export const revision = ${revision};`];
  for (let line = 0; line < 20; line++)
    lines.push(`export function step${line}(value: number): number { return value * ${line + 1} + ${file}; }`);
  return `${lines.join('\n')}\n`;
}

function data(text: string): string {
  return `data ${Buffer.byteLength(text)}\n${text}\n`;
}

function* fastImportStream(commits: number): Generator<string> {
  const random = numbers(42);
  const live = new Set<number>();
  let nextFile = 0;
  const initial = MODULES * FILES_PER_MODULE;
  for (let index = 1; index <= commits; index++) {
    const when = EPOCH + index * 60;
    const changes: string[] = [];
    let subject: string;
    if (index === 1) {
      for (; nextFile < initial; nextFile++) {
        live.add(nextFile);
        changes.push(`M 100644 inline ${pathOf(nextFile)}\n${data(source(nextFile, 0))}`);
      }
      subject = 'Initial import';
    } else if (index % 97 === 0) {
      const file = nextFile++;
      live.add(file);
      changes.push(`M 100644 inline ${pathOf(file)}\n${data(source(file, index))}`);
      subject = `Add ${pathOf(file)}`;
    } else if (index % 89 === 0 && live.size > initial / 2) {
      const file = [...live][Math.floor(random() * live.size)]!;
      live.delete(file);
      changes.push(`D ${pathOf(file)}\n`);
      subject = `Remove ${pathOf(file)}`;
    } else {
      const files = [...live];
      const count = 1 + Math.floor(random() * 3);
      for (let n = 0; n < count; n++) {
        const file = files[Math.floor(random() * files.length)]!;
        changes.push(`M 100644 inline ${pathOf(file)}\n${data(source(file, index))}`);
      }
      subject = `Change ${count} file${count > 1 ? 's' : ''} (#${index})`;
    }
    const author = `Developer ${index % 13} <dev${index % 13}@example.com> ${when} +0000`;
    yield `commit refs/heads/main\nmark :${index}\nauthor ${author}\ncommitter ${author}\n${data(subject)}`;
    if (index > 1) yield `from :${index - 1}\n`;
    yield* changes;
    yield '\n';
  }
  yield `reset refs/tags/${FIRST_TAG}\nfrom :1\n\nreset refs/tags/${LAST_TAG}\nfrom :${commits}\n\n`;
}

/** Creates `dir` as a git repository holding `commits` commits on main, the first and last tagged. */
export async function writeBenchHistory(dir: string, commits: number): Promise<void> {
  await run('git', ['init', '--quiet', '--initial-branch=main', dir]);
  const importer = spawn('git', ['fast-import', '--quiet'], { cwd: dir, stdio: ['pipe', 'ignore', 'pipe'] });
  let errors = '';
  importer.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const ended = new Promise<number | null>((resolve, reject) => {
    importer.on('error', reject);
    importer.on('close', resolve);
  });
  // Stops writing if the importer died, so its exit code and message are what the caller sees.
  importer.stdin.on('error', () => undefined);
  for (const chunk of fastImportStream(commits))
    if (!importer.stdin.write(chunk))
      await Promise.race([new Promise((resolve) => importer.stdin.once('drain', resolve)), ended]);
  importer.stdin.end();
  const code = await ended;
  if (code !== 0) throw new Error(`git fast-import exited with ${code}: ${errors.trim()}`);
}
