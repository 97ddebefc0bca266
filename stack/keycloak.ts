// Keycloak, the OpenID Connect provider the identity tests and the demo run against: the distribution provisioned by
// stack/provision-keycloak.sh, started in development mode with an in-memory database and the test realms of
// stack/keycloak/realm.json, on loopback.
//
// It needs 20-40 s to start, so a test run starts one and shares it (stack/test.sh):
//   node dist/stack/keycloak.js start --state FILE [--owner PID]   prints the base URL once Keycloak answers
//   node dist/stack/keycloak.js stop --state FILE                  stops it; nothing to do without a state file
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, readTail, sleep, startProcess, waitUntilReady } from './processes.js';

export interface KeycloakOptions {
  /** The realms imported at start: one realm or an array of them. Default stack/keycloak/realm.json. */
  realmFile?: string;
  /** Default: a free port. */
  port?: number;
  /** Default 180 s: a first start on a cold machine takes about 90. */
  startTimeoutMs?: number;
}

export interface Keycloak {
  /** http://127.0.0.1:PORT, no trailing slash. */
  url: string;
  /** The issuer of a realm's tokens, exactly as they carry it. */
  issuer: (realm?: string) => string;
  /** The master realm's administrator, for tests that change a realm at run time. */
  admin: { username: string; password: string };
  logFile: string;
  pid: number;
  /** From the start of the process until the first realm's discovery document answered. */
  readyInMs: number;
  stop(): Promise<void>;
}

export const DEFAULT_REALM = 'deploy-agent';
const START_TIMEOUT_MS = 180_000;
const STOP_GRACE_MS = 15_000;
const PROVISION_HINT = 'run `bash stack/provision-keycloak.sh` first';

export function issuerOf(url: string, realm = DEFAULT_REALM): string {
  return `${url.replace(/\/+$/, '')}/realms/${realm}`;
}

export async function startKeycloak(workDir: string, options: KeycloakOptions = {}): Promise<Keycloak> {
  const dist = keycloakDist();
  const javaHome = readFileSync(path.join(dist, '.java-home'), 'utf8').trim();
  const dir = path.resolve(workDir);
  const home = await instanceHome(dist, path.join(dir, 'home'));
  const realms = await importRealms(options.realmFile ?? defaultRealmFile(), path.join(home, 'data', 'import'));
  const port = options.port ?? (await freePort());
  const managementPort = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const admin = { username: 'admin', password: randomBytes(12).toString('hex') };

  const env: NodeJS.ProcessEnv = {};
  // Settings of the caller's own Keycloak (KC_DB, say) would change what is built and tested.
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('KC_')) env[name] = value;
  Object.assign(env, {
    JAVA_HOME: javaHome,
    KC_BOOTSTRAP_ADMIN_USERNAME: admin.username,
    KC_BOOTSTRAP_ADMIN_PASSWORD: admin.password,
    // C1 only: a server that lives for one test run starts faster and never runs long enough to miss C2.
    JAVA_OPTS_APPEND: '-XX:TieredStopAtLevel=1',
  });
  const started = Date.now();
  const child = await startProcess({
    name: 'keycloak',
    command: path.join(home, 'bin', 'kc.sh'),
    // --db is fixed when the distribution is built: it must stay what stack/provision-keycloak.sh built it with.
    args: [
      'start-dev',
      '--import-realm',
      '--db=dev-mem',
      '--http-host=127.0.0.1',
      `--http-port=${port}`,
      `--http-management-port=${managementPort}`,
      // Without it the tokens' issuer follows each request's Host header (localhost or 127.0.0.1).
      `--hostname=${url}`,
    ],
    logFile: path.join(dir, 'keycloak.log'),
    cwd: dir,
    env,
  });
  const firstRealm = realms[0] ?? DEFAULT_REALM;
  try {
    await waitUntilReady(child, {
      probe: async () => {
        const response = await fetch(`${issuerOf(url, firstRealm)}/.well-known/openid-configuration`);
        if (!response.ok) return false;
        const { issuer } = (await response.json()) as { issuer?: unknown };
        if (issuer !== issuerOf(url, firstRealm))
          throw new Error(`realm ${firstRealm} names its issuer ${String(issuer)}, not ${issuerOf(url, firstRealm)}`);
        return true;
      },
      timeoutMs: options.startTimeoutMs ?? START_TIMEOUT_MS,
      intervalMs: 250,
      probeTimeoutMs: 5_000,
    });
  } catch (error) {
    await child.stop({ graceMs: STOP_GRACE_MS });
    throw error;
  }
  const readyInMs = Date.now() - started;
  return {
    url,
    issuer: (realm = DEFAULT_REALM) => issuerOf(url, realm),
    admin,
    logFile: child.logFile,
    pid: child.pid,
    readyInMs,
    stop: () => child.stop({ graceMs: STOP_GRACE_MS }),
  };
}

// ---- How the people and the CI system of stack/keycloak/realm.json get their tokens (the demo plays them) ----

/** The audience the realm's deploy-agent clients put into their tokens. */
export const REALM_AUDIENCE = 'deploy-agent';

/** The realm's confidential client for CI, with its fixed secret; Keycloak names its service account after it. */
export const CI_PIPELINE = {
  clientId: 'ci-pipeline',
  secret: 'ci-pipeline-test-secret',
  user: 'service-account-ci-pipeline',
} as const;

/** The settings the CLI takes for a client-credentials login (client/credentials.ts), as a CI job sets them. */
export function clientCredentialsEnv(issuer: string): Record<string, string> {
  return {
    DEPLOY_AGENT_CLIENT_ID: CI_PIPELINE.clientId,
    DEPLOY_AGENT_CLIENT_SECRET: CI_PIPELINE.secret,
    DEPLOY_AGENT_OIDC_ISSUER: issuer,
  };
}

/**
 * A user's access token by the password grant of the realm's public CLI client, where the realm allows it; its
 * users' passwords are their names. A person would sign in with `deploy-agent login` (device flow) instead.
 */
export async function passwordGrantToken(issuer: string, user: string, password = user): Promise<string> {
  const response = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'password',
      client_id: 'deploy-agent-cli',
      username: user,
      password,
      scope: 'openid',
    }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await response.json().catch(() => ({}))) as {
    access_token?: string;
    error?: string;
    error_description?: string;
  };
  if (!response.ok || !body.access_token)
    throw new Error(
      `keycloak: no token for ${user}: ${body.error ?? `HTTP ${response.status}`} ${body.error_description ?? ''}`.trim(),
    );
  return body.access_token;
}

/**
 * A home of its own for one server: Keycloak keeps its data (import, transaction logs) under its home, found from
 * where kc.sh is. The start script is copied and everything else links to the shared distribution.
 */
async function instanceHome(dist: string, home: string): Promise<string> {
  await rm(home, { recursive: true, force: true });
  await mkdir(path.join(home, 'bin'), { recursive: true });
  await copyFile(path.join(dist, 'bin', 'kc.sh'), path.join(home, 'bin', 'kc.sh'));
  await chmod(path.join(home, 'bin', 'kc.sh'), 0o755);
  for (const entry of readdirSync(dist)) {
    if (entry === 'bin' || entry === 'data' || entry.startsWith('.')) continue;
    await symlink(path.join(dist, entry), path.join(home, entry));
  }
  return home;
}

/** Writes each realm of the file as its own import file; returns their names in order. */
async function importRealms(realmFile: string, importDir: string): Promise<string[]> {
  const parsed = JSON.parse(await readFile(realmFile, 'utf8')) as unknown;
  const realms = (Array.isArray(parsed) ? parsed : [parsed]) as { realm?: unknown }[];
  await mkdir(importDir, { recursive: true });
  const names: string[] = [];
  for (const realm of realms) {
    if (typeof realm.realm !== 'string' || !/^[A-Za-z0-9._-]+$/.test(realm.realm))
      throw new Error(`keycloak: ${realmFile} holds a realm without a usable "realm" name`);
    names.push(realm.realm);
    await writeFile(path.join(importDir, `${realm.realm}-realm.json`), JSON.stringify(realm));
  }
  return names;
}

function keycloakDist(): string {
  const version = pinnedVersion('KEYCLOAK_VERSION');
  const dist = path.join(cacheDir(), `keycloak-${version}`);
  if (!existsSync(path.join(dist, 'bin', 'kc.sh')) || !existsSync(path.join(dist, '.java-home')))
    throw new Error(`keycloak: Keycloak ${version} is not installed in ${dist}; ${PROVISION_HINT}`);
  return dist;
}

/** Same rule as stack/versions.sh, so the two always agree on where the cache is. */
function cacheDir(): string {
  if (process.env.DEPLOY_AGENT_CACHE) return process.env.DEPLOY_AGENT_CACHE;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'deploy-agent');
}

function pinnedVersion(name: string): string {
  const text = readFileSync(stackFile('versions.sh'), 'utf8');
  const match = new RegExp(`^${name}=([A-Za-z0-9._-]+)\\s*$`, 'm').exec(text);
  if (!match?.[1]) throw new Error(`${name} is not set in stack/versions.sh`);
  return match[1];
}

function defaultRealmFile(): string {
  return stackFile(path.join('keycloak', 'realm.json'));
}

// Compiled files run from dist/stack, sources from stack: walk up until the file appears under a stack directory.
function stackFile(relative: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = path.join(dir, 'stack', relative);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`keycloak: cannot find stack/${relative} above ${fileURLToPath(import.meta.url)}`);
}

// ---- One server for a whole test run, held by a supervisor process that outlives the `start` command ----

interface State {
  url: string;
  supervisorPid: number;
  keycloakPid: number;
  logFile: string;
  readyInMs: number;
}

const OWNER_CHECK_MS = 2_000;

/** Starts a detached supervisor and returns once its Keycloak answers, or throws with the supervisor's log. */
async function startCommand(stateFile: string, owner: number | undefined): Promise<State> {
  const existing = readState(stateFile);
  if (existing && isAlive(existing.supervisorPid))
    throw new Error(`keycloak: ${stateFile} names a running server (${existing.url}); stop it first`);
  rmSync(stateFile, { force: true });
  const workDir = path.join(path.dirname(path.resolve(stateFile)), 'keycloak');
  await mkdir(workDir, { recursive: true });
  const log = path.join(workDir, 'supervisor.log');
  const fd = openSync(log, 'a');
  const args = [fileURLToPath(import.meta.url), 'serve', '--state', stateFile];
  if (owner) args.push('--owner', String(owner));
  // Its output goes to a file: a caller reading this command's stdout must not wait for the supervisor to end.
  const supervisor = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  supervisor.unref();
  let exited = false;
  supervisor.once('exit', () => (exited = true));
  const deadline = Date.now() + START_TIMEOUT_MS + 30_000;
  while (Date.now() < deadline) {
    const state = readState(stateFile);
    if (state) return state;
    if (exited) break;
    await sleep(250);
  }
  if (!exited && supervisor.pid) killQuietly(supervisor.pid, 'SIGTERM');
  throw new Error(`keycloak: did not start; supervisor log ${log}:\n${readTail(log, 60)}`);
}

async function serveCommand(stateFile: string, owner: number | undefined): Promise<void> {
  const keycloak = await startKeycloak(path.join(path.dirname(path.resolve(stateFile)), 'keycloak'));
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await keycloak.stop();
      rmSync(stateFile, { force: true });
      process.exit(0);
    })();
  };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, stop);
  // A test run killed outright cannot run its own cleanup; its server must not live on for days.
  if (owner) setInterval(() => isAlive(owner) || stop(), OWNER_CHECK_MS);
  else setInterval(() => undefined, 60_000);
  const state: State = {
    url: keycloak.url,
    supervisorPid: process.pid,
    keycloakPid: keycloak.pid,
    logFile: keycloak.logFile,
    readyInMs: keycloak.readyInMs,
  };
  // Written whole and then renamed: `start` polls for it and must never read half of it.
  await writeFile(`${stateFile}.tmp`, JSON.stringify(state), { mode: 0o600 });
  await rename(`${stateFile}.tmp`, stateFile);
}

async function stopCommand(stateFile: string): Promise<void> {
  const state = readState(stateFile);
  if (!state) return;
  killQuietly(state.supervisorPid, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS + 10_000;
  while (isAlive(state.supervisorPid) && Date.now() < deadline) await sleep(200);
  if (isAlive(state.supervisorPid)) killQuietly(state.supervisorPid, 'SIGKILL');
  // Keycloak runs in a process group of its own; a supervisor that failed to stop it leaves the group behind.
  killQuietly(-state.keycloakPid, 'SIGKILL');
  rmSync(stateFile, { force: true });
}

function readState(stateFile: string): State | undefined {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function option(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

async function main(args: string[]): Promise<void> {
  const [command] = args;
  const stateFile = option(args, '--state');
  const ownerText = option(args, '--owner');
  const owner = ownerText ? Number(ownerText) : undefined;
  if (!stateFile || (owner !== undefined && !Number.isInteger(owner))) {
    throw new Error('usage: keycloak.js start|stop --state FILE [--owner PID]');
  }
  if (command === 'start') {
    const state = await startCommand(stateFile, owner);
    process.stderr.write(`keycloak: ${state.url} ready in ${(state.readyInMs / 1000).toFixed(1)} s\n`);
    process.stdout.write(`${state.url}\n`);
  } else if (command === 'serve') {
    await serveCommand(stateFile, owner);
  } else if (command === 'stop') {
    await stopCommand(stateFile);
  } else {
    throw new Error('usage: keycloak.js start|stop --state FILE [--owner PID]');
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
