/**
 * Secret values for a Docker release, read by the worker only when it creates the container. The target carries
 * references (a file or a variable of the worker's, named in the platform policy); the values go straight into the
 * container's Env and nowhere else: not into a result, a message or a log. What a history keeps of them is the
 * container's configuration fingerprint, keyed (keys/fingerprint.ts), and the names of the variables.
 */
import { readFile } from 'node:fs/promises';
import { fail } from '../../domain/failures.js';
import type { SecretReference } from '../../domain/secrets.js';
import type { DockerTarget } from '../../domain/target.js';
import { configuredKeyRing } from '../../keys/fingerprint.js';

export interface ResolvedSecrets {
  /** `NAME=value` entries for the container's Env. */
  env: string[];
  /** The values themselves, so that an engine message quoting one can be cleaned before it goes anywhere. */
  values: string[];
}

/** Where the worker looks for a secret, for messages: the reference, never the value. */
const whereOf = (reference: SecretReference): string =>
  'file' in reference ? `file ${reference.file} on the worker` : `variable ${reference.env} of the worker`;

type Read = { value: string } | { problem: string };

async function read(variable: string, reference: SecretReference): Promise<Read> {
  const named = `secret ${reference.secret} (container.secrets.${variable}), looked for in ${whereOf(reference)}`;
  let value: string | undefined;
  if ('file' in reference) {
    const text = await readFile(reference.file, 'utf8').catch((error: unknown) => {
      return { code: (error as NodeJS.ErrnoException).code ?? 'unreadable' };
    });
    if (typeof text !== 'string') return { problem: `${named}: cannot be read (${text.code})` };
    // Files written by editors and `echo` end with a newline that is not part of the secret.
    value = text.replace(/\r?\n$/, '');
  } else {
    value = process.env[reference.env];
    if (value === undefined) return { problem: `${named}: the variable is not set` };
  }
  if (value === '') return { problem: `${named}: it is empty` };
  if (value.includes('\0')) return { problem: `${named}: it holds a NUL character, which no variable can hold` };
  return { value };
}

function keyRingProblem(): string | undefined {
  try {
    if (configuredKeyRing()) return undefined;
    return 'secrets need the worker’s key ring (DEPLOY_AGENT_KEYS_FILE or DEPLOY_AGENT_KEYS): without it the configuration hash would not be keyed';
  } catch (error) {
    return (error as Error).message;
  }
}

/** What stands between the release and its secrets, one line per secret: validation's check, changing nothing. */
export async function secretSourceProblems(target: DockerTarget): Promise<string[]> {
  const references = Object.entries(target.secrets ?? {});
  if (!references.length) return [];
  const problems: string[] = [];
  const keys = keyRingProblem();
  if (keys) problems.push(keys);
  for (const [variable, reference] of references) {
    const result = await read(variable, reference);
    if ('problem' in result) problems.push(result.problem);
  }
  return problems;
}

/** The secrets' Env entries; a secret the worker cannot find fails the release (not retried), naming where it looked. */
export async function resolveSecrets(target: DockerTarget): Promise<ResolvedSecrets> {
  const references = Object.entries(target.secrets ?? {});
  const resolved: ResolvedSecrets = { env: [], values: [] };
  if (!references.length) return resolved;
  const keys = keyRingProblem();
  if (keys) throw fail('invalid', keys);
  for (const [variable, reference] of references) {
    const result = await read(variable, reference);
    if ('problem' in result) throw fail('invalid', result.problem);
    resolved.env.push(`${variable}=${result.value}`);
    resolved.values.push(result.value);
  }
  return resolved;
}

/** The error with every secret value in its messages replaced by a mark: engines may quote the Env they refuse. */
export function withoutSecretValues(error: unknown, values: readonly string[]): unknown {
  if (!values.length || typeof error !== 'object' || error === null) return error;
  const clean = (text: string) => values.reduce((t, value) => t.split(value).join('[secret value]'), text);
  const subject = error as { message?: unknown; json?: unknown; reason?: unknown };
  if (typeof subject.message === 'string') subject.message = clean(subject.message);
  if (typeof subject.reason === 'string') subject.reason = clean(subject.reason);
  if (typeof subject.json === 'string') subject.json = clean(subject.json);
  const body = subject.json as { message?: unknown } | null | undefined;
  if (typeof body === 'object' && body && typeof body.message === 'string') body.message = clean(body.message);
  if (error instanceof Error && error.stack) error.stack = clean(error.stack);
  return error;
}

/** The names of the variables two Env lists set differently: what a diff may say about them. */
export function changedVariables(from: readonly string[], to: readonly string[]): string[] {
  const asMap = (env: readonly string[]) =>
    new Map(env.map((entry) => [entry.split('=', 1)[0] ?? entry, entry.slice(entry.indexOf('=') + 1)]));
  const [before, after] = [asMap(from), asMap(to)];
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names].filter((name) => before.get(name) !== after.get(name)).sort();
}
