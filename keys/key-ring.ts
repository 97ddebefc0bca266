/**
 * The platform's keys: one file (DEPLOY_AGENT_KEYS_FILE) or one variable (DEPLOY_AGENT_KEYS) holding named 256-bit
 * keys and which one is current. New data is sealed with the current key and names its id; every key listed stays
 * readable, so rotating is adding a key, making it current, and removing the old one once nothing needs it.
 * Each use gets its own key derived from the listed one, so a payload key never signs a revision and vice versa.
 */
import { hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidInput } from '../domain/failures.js';
import { parseYamlFile } from '../domain/yaml.js';

const keyIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  error: 'expected a key id of letters, digits, dots, dashes and underscores',
});

const keyMaterialSchema = z
  .string()
  .refine((value) => /^[A-Za-z0-9+/]+={0,2}$/.test(value) && Buffer.from(value, 'base64').length === 32, {
    error: 'expected 32 random bytes in base64 (openssl rand -base64 32)',
  });

export const keyRingSchema = z
  .strictObject({ current: keyIdSchema, keys: z.record(keyIdSchema, keyMaterialSchema) })
  .refine((ring) => Object.hasOwn(ring.keys, ring.current), {
    path: ['current'],
    error: 'expected the id of one of the keys',
  });
export type KeyRingDocument = z.infer<typeof keyRingSchema>;

/** What a key is used for; each purpose derives its own key from every key of the ring. */
export type KeyPurpose = 'payload' | 'revision' | 'fingerprint';

export class KeyRing {
  private readonly material: Map<string, Buffer>;
  readonly currentId: string;

  constructor(document: KeyRingDocument) {
    this.currentId = document.current;
    this.material = new Map(Object.entries(document.keys).map(([id, key]) => [id, Buffer.from(key, 'base64')]));
  }

  /** The key for `purpose` derived from key `id`; undefined when the ring does not (or no longer) hold it. */
  key(purpose: KeyPurpose, id: string = this.currentId): Buffer | undefined {
    const material = this.material.get(id);
    if (!material) return undefined;
    return Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), `deploy-agent ${purpose} v1`, 32));
  }

  get ids(): string[] {
    return [...this.material.keys()];
  }
}

const checkRing = (document: unknown) => {
  const result = keyRingSchema.safeParse(document);
  return result.success ? { value: result.data, problems: [] } : { problems: result.error.issues };
};

/** The ring named by the environment; throws InvalidInput naming the file or variable and the field. */
export function keyRingFromEnv(env: NodeJS.ProcessEnv = process.env): KeyRing {
  const file = env.DEPLOY_AGENT_KEYS_FILE;
  if (file) return loadKeyRingFile(file);
  const inline = env.DEPLOY_AGENT_KEYS;
  if (inline) return new KeyRing(parseYamlFile(inline, 'DEPLOY_AGENT_KEYS', checkRing));
  throw new InvalidInput(
    'no keys: set DEPLOY_AGENT_KEYS_FILE to a key file ({current: ID, keys: {ID: base64 of 32 bytes}}) ' +
      'or DEPLOY_AGENT_KEYS to its content',
  );
}

export function loadKeyRingFile(file: string): KeyRing {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new InvalidInput(
      `${file}: cannot read the key file (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`,
    );
  }
  return new KeyRing(parseYamlFile(text, file, checkRing));
}

/** A fresh ring with one key, written readable by its owner only: for development stacks and tests. */
export function writeNewKeyRing(file: string, id = 'k1'): KeyRingDocument {
  const document = { current: id, keys: { [id]: randomBytes(32).toString('base64') } };
  writeFileSync(file, JSON.stringify(document, null, 2) + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return document;
}
