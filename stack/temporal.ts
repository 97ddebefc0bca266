// Where the Temporal servers provisioned by stack/provision.sh live. Nothing here downloads anything: the SDK's
// own download cannot work on machines without internet access, and a silent fallback would hide that.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PROVISION_HINT = 'run `bash stack/provision.sh` first';
const UI_PROVISION_HINT = 'run `bash stack/provision-ui.sh` first';

/** The `temporal` CLI (dev server): the provisioned one, else `temporal` on PATH. */
export function temporalCliPath(): string {
  const version = pinnedVersion('TEMPORAL_CLI_VERSION');
  const cached = path.join(cacheDir(), `temporal-cli-${version}`, 'temporal');
  return firstExecutable([cached, onPath('temporal')], `the Temporal CLI ${version}`);
}

/** The Java time-skipping test server wrapper: the provisioned one, else `temporal-test-server` on PATH. */
export function timeSkippingServerPath(): string {
  const version = pinnedVersion('TEMPORAL_TEST_SERVER_VERSION');
  const cached = path.join(cacheDir(), `temporal-test-server-${version}`, 'test-server');
  return firstExecutable([cached, onPath('temporal-test-server')], `the Temporal time-skipping test server ${version}`);
}

/** The standalone Temporal Web UI server (sign-in, codec with the user's token): provisioned by stack/provision-ui.sh. */
export function temporalUiServerPath(): string {
  const version = pinnedVersion('TEMPORAL_UI_SERVER_VERSION');
  const cached = path.join(cacheDir(), `temporal-ui-server-${version}`, 'temporal-ui-server');
  return firstExecutable(
    [cached, onPath('temporal-ui-server')],
    `the Temporal UI server ${version}`,
    UI_PROVISION_HINT,
  );
}

function firstExecutable(candidates: (string | undefined)[], what: string, hint = PROVISION_HINT): string {
  for (const candidate of candidates) {
    if (candidate && isExecutable(candidate)) return candidate;
  }
  const looked = candidates.filter((c): c is string => c !== undefined).join(', ');
  throw new Error(`${what} is not installed (looked at ${looked || 'nothing'} and PATH); ${hint}`);
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** Same rule as stack/versions.sh, so the two always agree on where the cache is. */
function cacheDir(): string {
  if (process.env.DEPLOY_AGENT_CACHE) return process.env.DEPLOY_AGENT_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'deploy-agent');
}

let versions: Map<string, string> | undefined;

/** Reads a pin from stack/versions.sh, the single place versions are changed. */
function pinnedVersion(name: string): string {
  versions ??= readVersions();
  const value = versions.get(name);
  if (!value) throw new Error(`${name} is not set in stack/versions.sh`);
  return value;
}

function readVersions(): Map<string, string> {
  const file = findVersionsFile();
  const result = new Map<string, string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^([A-Z][A-Z0-9_]*)=([A-Za-z0-9._-]+)\s*$/.exec(line.trim());
    if (match?.[1] && match[2]) result.set(match[1], match[2]);
  }
  return result;
}

// Compiled files run from dist/stack, sources from stack: walk up until stack/versions.sh appears.
function findVersionsFile(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = path.join(dir, 'stack', 'versions.sh');
    if (existsSync(candidate)) return candidate;
    const here = path.join(dir, 'versions.sh');
    if (path.basename(dir) === 'stack' && existsSync(here)) return here;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find stack/versions.sh above ${fileURLToPath(import.meta.url)}`);
}
