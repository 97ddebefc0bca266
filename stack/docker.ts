// A private Docker engine and image registry on loopback, for tests and the demo. Nothing can be pulled on the
// machines this runs on, so images are built locally on a busybox base imported from the host's busybox-static.
//
// Each engine gets its own data-root, exec-root, socket, containerd namespace and bridge (unique name and
// subnet), and runs without iptables: published ports go through docker-proxy, which is enough for 127.0.0.1.
// That leaves no global name (docker0, DOCKER chains) for two engines on one machine to fight over.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, copyFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { createCertificateAuthority } from './nginx.js';
import { freePort, registerExitCleanup, startAndWait, tcpAnswers, type ManagedProcess } from './processes.js';

export interface DockerEngine {
  socketPath: string;
  /** unix://<socketPath>, for DOCKER_HOST or a deploy spec. */
  dockerHost: string;
  /** The bridge containers attach to by default, and its subnet. */
  bridge: { name: string; subnet: string };
  client(): Docker;
  /**
   * Stops the daemon alone, as a service manager would (SIGTERM: it stops the running containers, then its
   * containerd, then itself), and keeps everything else: data root, exec root, socket path, bridge. Containers,
   * images and volumes survive in the data root; `startDaemon` brings the same engine back. Safe to call twice.
   */
  stopDaemon(): Promise<void>;
  /** Starts the daemon again after `stopDaemon`, with the same arguments; resolves once it answers. */
  startDaemon(): Promise<void>;
  /** Removes every container, stops the daemon and removes its bridge and mounts. Safe to call twice. */
  stop(): Promise<void>;
  /** tcp://127.0.0.1:PORT when started with `tls`: the same engine, as a worker on another machine reaches it. */
  tlsHost?: string;
  /**
   * With `tls`: the CA that signed the engine's certificate, and a client certificate and key from that CA, which
   * the engine requires on `tlsHost`. Shaped as a policy's `docker.tls`, so that a target can take it as it is.
   */
  tls?: { ca: string; cert: string; key: string };
}

export interface DockerEngineOptions {
  /** Also serve the API on `tlsHost`, over TLS that requires a client certificate (`--tlsverify`). */
  tls?: boolean;
}

export type TlsDockerEngine = DockerEngine & Required<Pick<DockerEngine, 'tlsHost' | 'tls'>>;

export interface LocalRegistry {
  /** 127.0.0.1:PORT, usable as an image name prefix. */
  address: string;
  stop(): Promise<void>;
}

export interface LocalDockerStack {
  engine: DockerEngine;
  registry: LocalRegistry;
  /** <registry>/busybox:<busybox version>, pushed. */
  baseImage: string;
  stop(): Promise<void>;
}

export interface ServiceImageOptions {
  /** <registry address>/<name> */
  repository: string;
  /** Becomes the tag and what GET /version answers. */
  version: string;
  /** false builds an image whose GET /health answers 503. */
  healthy: boolean;
}

const ENGINE_START_MS = 60_000;
const ENGINE_STOP_GRACE_MS = 20_000;
// dockerd gives each container 10 s to stop on SIGTERM, then stops containerd.
const DAEMON_SHUTDOWN_MS = 60_000;
const REGISTRY_START_MS = 20_000;
const BUILD_MS = 180_000;
const PUSH_MS = 120_000;
const API_CALL_MS = 30_000;
const COMMAND_MS = 30_000;
// Longest unix socket path is 107 bytes; containerd's socket sits deeper in the exec-root than anything else.
const MAX_EXEC_ROOT_LENGTH = 60;
// Where Debian puts ip, dockerd and docker-proxy; a caller's PATH may lack the sbin directories.
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function startDockerEngine(workDir: string, options: { tls: true }): Promise<TlsDockerEngine>;
export function startDockerEngine(workDir: string, options?: DockerEngineOptions): Promise<DockerEngine>;
export async function startDockerEngine(workDir: string, options: DockerEngineOptions = {}): Promise<DockerEngine> {
  if (process.getuid?.() !== 0) throw new Error('docker: the local Docker engine needs root (bridge, mounts, dockerd)');
  const dockerd = findExecutable('dockerd');
  const dockerInit = findExecutable('docker-init', false);
  await mkdir(workDir, { recursive: true });
  const dir = path.resolve(workDir);
  const dataRoot = path.join(dir, 'data');
  const configFile = path.join(dir, 'daemon.json');
  const pidFile = path.join(dir, 'docker.pid');
  const logFile = path.join(dir, 'dockerd.log');
  // Socket paths are limited in length; a deep work directory gets a short private runtime directory instead.
  let runDir = dir;
  let shortRunDir: string | undefined;
  if (path.join(dir, 'run').length > MAX_EXEC_ROOT_LENGTH) {
    shortRunDir = await mkdtemp(path.join('/tmp', 'da-'));
    runDir = shortRunDir;
  }
  const execRoot = path.join(runDir, 'run');
  const socketPath = path.join(runDir, 'docker.sock');
  await mkdir(dataRoot, { recursive: true });
  // An empty config file keeps the machine's /etc/docker/daemon.json out of the picture.
  await writeFile(configFile, '{}\n');
  const pki = options.tls ? await engineCertificates(path.join(dir, 'pki')) : undefined;
  let tlsPort = pki ? await freePort() : 0;

  const id = randomBytes(4).toString('hex');
  const bridge = await createBridge(id);
  const markers = [execRoot, dataRoot, socketPath];
  const cleanUpSync = () => {
    killProcessesMentioning(markers);
    unmountUnder([dataRoot, execRoot]);
    deleteBridgeSync(bridge.name);
  };
  const unregister = registerExitCleanup(cleanUpSync);

  const args = [
    `--data-root=${dataRoot}`,
    `--exec-root=${execRoot}`,
    `--pidfile=${pidFile}`,
    `--host=unix://${socketPath}`,
    `--config-file=${configFile}`,
    `--bridge=${bridge.name}`,
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--ip-forward=false',
    // A port published without an address binds to loopback only.
    '--ip=127.0.0.1',
    '--userland-proxy=true',
    `--containerd-namespace=deploy-agent-${id}`,
    `--containerd-plugins-namespace=deploy-agent-${id}-plugins`,
  ];
  const tlsArgs = () =>
    pki
      ? [
          `--host=tcp://127.0.0.1:${tlsPort}`,
          '--tlsverify',
          `--tlscacert=${pki.ca}`,
          `--tlscert=${pki.server.certPath}`,
          `--tlskey=${pki.server.keyPath}`,
        ]
      : [];
  // A caller may go straight to tlsHost: the engine is ready once both listeners answer.
  const ready = async () => (await ping(socketPath)) && (!pki || (await tcpAnswers('127.0.0.1', tlsPort)));
  // docker-init (tini) as a subreaper reaps the containerd shims that would otherwise end as zombies of init.
  const launch = () => {
    const daemonArgs = [...args, ...tlsArgs()];
    return startAndWait({
      name: 'dockerd',
      command: dockerInit ?? dockerd,
      args: dockerInit ? ['-s', '--', dockerd, ...daemonArgs] : daemonArgs,
      logFile,
      env: { ...process.env, PATH: `${process.env.PATH ?? ''}:${SYSTEM_PATH}` },
      ready: { probe: ready, timeoutMs: ENGINE_START_MS, intervalMs: 200 },
      stop: { graceMs: ENGINE_STOP_GRACE_MS },
    });
  };
  // The TLS port is free when chosen but may be taken before dockerd binds it: a few are tried. A restart keeps the
  // port it got, since callers hold tlsHost.
  const launchFirst = async (): Promise<ManagedProcess> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch();
      } catch (error) {
        if (!pki || attempt >= 3 || !/address already in use/.test(message(error))) throw error;
        killProcessesMentioning(markers);
        tlsPort = await freePort();
      }
    }
  };
  let daemon: ManagedProcess;
  try {
    daemon = await launchFirst();
  } catch (error) {
    cleanUpSync();
    unregister();
    if (shortRunDir) await rm(shortRunDir, { recursive: true, force: true });
    throw error;
  }

  const client = new Docker({ socketPath });
  let stopping: Promise<void> | undefined;
  // Between stopDaemon and startDaemon; each of them (and stop) waits for the one before it to finish.
  let daemonDown = false;
  let daemonChange: Promise<void> = Promise.resolve();
  const changeDaemon = (change: () => Promise<void>): Promise<void> => {
    const next = daemonChange.then(change);
    daemonChange = next.catch(() => undefined);
    return next;
  };
  return {
    socketPath,
    dockerHost: `unix://${socketPath}`,
    bridge,
    ...(pki && { tlsHost: `tcp://127.0.0.1:${tlsPort}`, tls: pki.client }),
    client: () => client,
    stopDaemon: () =>
      changeDaemon(async () => {
        if (daemonDown || stopping) return;
        daemonDown = true;
        await stopDaemonAlone(daemon, markers);
      }),
    startDaemon: () =>
      changeDaemon(async () => {
        if (!daemonDown || stopping) return;
        daemon = await launch();
        daemonDown = false;
      }),
    stop() {
      stopping ??= (async () => {
        await daemonChange;
        const problems: string[] = [];
        if (!daemonDown) {
          // Removed through the API first: the daemon would otherwise wait out each container's stop timeout.
          await removeAllContainers(client).catch((error: unknown) =>
            problems.push(`removing containers: ${message(error)}`),
          );
          await withTimeout(client.pruneNetworks(), API_CALL_MS, 'pruning networks').catch((error: unknown) =>
            problems.push(`pruning networks: ${message(error)}`),
          );
        }
        await daemon.stop({ graceMs: ENGINE_STOP_GRACE_MS });
        cleanUpSync();
        unregister();
        if (shortRunDir) await rm(shortRunDir, { recursive: true, force: true });
        const leftovers = mountsUnder([dataRoot, execRoot]);
        if (leftovers.length > 0) problems.push(`still mounted: ${leftovers.join(', ')}`);
        if (problems.length > 0) throw new Error(`docker: stopping the engine: ${problems.join('; ')}`);
      })();
      return stopping;
    },
  };
}

/** A test CA, the engine's server certificate (IP 127.0.0.1) and one client certificate the engine accepts. */
async function engineCertificates(dir: string) {
  const authority = await createCertificateAuthority(dir, 'deploy-agent test Docker engine CA');
  const server = await authority.issue('engine', 'server');
  const client = await authority.issue('client', 'client');
  return { ca: authority.caPath, server, client: { ca: authority.caPath, cert: client.certPath, key: client.keyPath } };
}

/**
 * SIGTERM to the daemon alone, as a service manager stops it (docker-init passes the signal on to dockerd): dockerd
 * stops its containers, then its containerd, then itself. Whatever of it is still there after the grace period is
 * killed, so that nothing stands in the way of the next daemon on the same roots.
 */
async function stopDaemonAlone(daemon: ManagedProcess, markers: string[]): Promise<void> {
  try {
    process.kill(daemon.pid, 'SIGTERM');
  } catch {
    // Already gone.
  }
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([
    daemon.done.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), DAEMON_SHUTDOWN_MS))),
  ]);
  clearTimeout(timer);
  if (!ended) await daemon.stop({ graceMs: 0 });
  killProcessesMentioning(markers);
}

export async function startRegistry(workDir: string): Promise<LocalRegistry> {
  const registryBinary = findExecutable('docker-registry');
  await mkdir(workDir, { recursive: true });
  const dir = path.resolve(workDir);
  const storage = path.join(dir, 'storage');
  await mkdir(storage, { recursive: true });
  // The port is free when chosen but may be taken before the registry binds it: try a few.
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const configFile = path.join(dir, 'config.yml');
    await writeFile(
      configFile,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        '  accesslog:',
        '    disabled: true',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${JSON.stringify(storage)}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${address}`,
        `  secret: ${randomBytes(16).toString('hex')}`,
        '',
      ].join('\n'),
    );
    try {
      const registry = await startAndWait({
        name: 'docker-registry',
        command: registryBinary,
        args: ['serve', configFile],
        logFile: path.join(dir, 'registry.log'),
        ready: { probe: () => httpOk(`http://${address}/v2/`), timeoutMs: REGISTRY_START_MS },
        stop: { graceMs: 5_000 },
      });
      return { address, stop: () => registry.stop({ graceMs: 5_000 }) };
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError instanceof Error ? lastError : new Error(String(lastError));
}

/** An engine and a registry, with the busybox base image imported and pushed. */
export async function startLocalDockerStack(
  workDir: string,
  options: DockerEngineOptions = {},
): Promise<LocalDockerStack> {
  const dir = path.resolve(workDir);
  const [engine, registry] = await Promise.allSettled([
    startDockerEngine(path.join(dir, 'engine'), options),
    startRegistry(path.join(dir, 'registry')),
  ]);
  const started = [engine, registry].flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stopAll = async () => {
    const results = await Promise.allSettled(started.map((s) => s.stop()));
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [message(r.reason)] : []));
    if (failed.length > 0) throw new Error(failed.join('; '));
  };
  if (engine.status === 'rejected' || registry.status === 'rejected') {
    await stopAll().catch(() => undefined);
    const failure: unknown = engine.status === 'rejected' ? engine.reason : (registry as PromiseRejectedResult).reason;
    throw failure instanceof Error ? failure : new Error(String(failure));
  }
  try {
    const baseImage = await importBaseImage(engine.value, registry.value.address, path.join(dir, 'base'));
    return { engine: engine.value, registry: registry.value, baseImage, stop: stopAll };
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw error;
  }
}

/** Builds examples/web-service at the given version, pushes it and returns its repository digest. */
export async function buildServiceImage(
  stack: Pick<LocalDockerStack, 'engine' | 'baseImage'>,
  options: ServiceImageOptions,
): Promise<{ reference: string; digest: string }> {
  const client = stack.engine.client();
  const context = findUp(path.join('examples', 'web-service', 'Dockerfile'));
  const contextDir = path.dirname(context);
  const reference = `${options.repository}:${options.version}`;
  const stream = await withTimeout(
    client.buildImage(
      { context: contextDir, src: await listFiles(contextDir) },
      {
        t: reference,
        buildargs: { BASE_IMAGE: stack.baseImage, VERSION: options.version, HEALTHY: String(options.healthy) },
        rm: true,
        forcerm: true,
      },
    ),
    API_CALL_MS,
    `building ${reference}`,
  );
  await followStream(client, stream, BUILD_MS, `building ${reference}`);
  const digest = await pushImage(client, options.repository, options.version);
  return { reference, digest };
}

async function importBaseImage(engine: DockerEngine, registry: string, workDir: string): Promise<string> {
  const busybox = findExecutable('busybox');
  const client = engine.client();
  const rootfs = path.join(workDir, 'rootfs');
  await rm(workDir, { recursive: true, force: true });
  for (const sub of ['bin', 'etc', 'tmp', 'www']) await mkdir(path.join(rootfs, sub), { recursive: true });
  await copyFile(busybox, path.join(rootfs, 'bin', 'busybox'));
  const applets = (await run(busybox, ['--list'])).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  await Promise.all(applets.map((applet) => symlink('busybox', path.join(rootfs, 'bin', applet))));
  await writeFile(
    path.join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  await writeFile(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  const tarball = path.join(workDir, 'rootfs.tar');
  await run('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', tarball, '.']);

  const version = /BusyBox v(\d+(?:\.\d+)*)/.exec(await run(busybox, ['--help']).catch(() => ''))?.[1] ?? 'static';
  const repository = `${registry}/busybox`;
  const stream = await withTimeout(
    client.importImage(tarball, { repo: repository, tag: version }),
    API_CALL_MS,
    'importing busybox',
  );
  await followStream(client, stream, API_CALL_MS, 'importing busybox');
  await pushImage(client, repository, version);
  return `${repository}:${version}`;
}

async function pushImage(client: Docker, repository: string, tag: string): Promise<string> {
  // An empty auth header: the engine refuses a push without one, and the local registry needs no credentials.
  const stream = await withTimeout(
    client.getImage(`${repository}:${tag}`).push({ tag, authconfig: {} }),
    API_CALL_MS,
    `pushing ${repository}:${tag}`,
  );
  const events = await followStream(client, stream, PUSH_MS, `pushing ${repository}:${tag}`);
  const digest = events.map((e) => e.aux?.Digest).find((d): d is string => typeof d === 'string');
  if (!digest) throw new Error(`docker: pushing ${repository}:${tag} reported no digest`);
  return digest;
}

interface StreamEvent {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Digest?: string };
}

/** Consumes a build, import or push progress stream; the engine reports failures inside it, not as HTTP errors. */
async function followStream(
  client: Docker,
  stream: NodeJS.ReadableStream,
  timeoutMs: number,
  what: string,
): Promise<StreamEvent[]> {
  const events = await withTimeout(
    new Promise<StreamEvent[]>((resolve, reject) => {
      client.modem.followProgress(stream, (error: Error | null, output: StreamEvent[]) =>
        error ? reject(error) : resolve(output),
      );
    }),
    timeoutMs,
    what,
    () => (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.(),
  );
  const failure = events.find((e) => e.error || e.errorDetail);
  if (failure) {
    const output = events
      .map((e) => e.stream ?? e.status ?? '')
      .join('')
      .trim()
      .split('\n')
      .slice(-15)
      .join('\n');
    throw new Error(`docker: ${what} failed: ${failure.errorDetail?.message ?? failure.error}\n${output}`);
  }
  return events;
}

async function removeAllContainers(client: Docker): Promise<void> {
  const containers = await withTimeout(client.listContainers({ all: true }), API_CALL_MS, 'listing containers');
  await Promise.all(
    containers.map((c) =>
      withTimeout(
        client.getContainer(c.Id).remove({ force: true, v: true }),
        API_CALL_MS,
        `removing container ${c.Id}`,
      ),
    ),
  );
}

// --- bridge -------------------------------------------------------------------------------------------------

async function createBridge(id: string): Promise<{ name: string; subnet: string }> {
  const name = `da-${id}`;
  for (let attempt = 0; attempt < 20; attempt++) {
    const taken = await usedSubnets();
    const third = 192 + (randomBytes(1)[0]! % 62);
    const fourth = randomBytes(1)[0]!;
    const subnet = `10.${third}.${fourth}.0/24`;
    if (taken.some((cidr) => overlaps(cidr, subnet))) continue;
    await run('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
    try {
      await run('ip', ['addr', 'add', `10.${third}.${fourth}.1/24`, 'dev', name]);
      await run('ip', ['link', 'set', name, 'up']);
    } catch (error) {
      deleteBridgeSync(name);
      throw error;
    }
    return { name, subnet };
  }
  throw new Error('docker: no free 10.192.0.0/10 subnet for the engine bridge');
}

async function usedSubnets(): Promise<string[]> {
  const routes = await run('ip', ['-4', 'route', 'show', 'table', 'all']);
  const addresses = await run('ip', ['-4', '-o', 'addr', 'show']);
  return [...`${routes}\n${addresses}`.matchAll(/\b(\d+\.\d+\.\d+\.\d+)(\/\d+)?\b/g)].map(
    (m) => `${m[1]}${m[2] ?? '/32'}`,
  );
}

function overlaps(a: string, b: string): boolean {
  const [aStart, aEnd] = range(a);
  const [bStart, bEnd] = range(b);
  return aStart <= bEnd && bStart <= aEnd;
}

function range(cidr: string): [number, number] {
  const [ip = '0.0.0.0', bits = '32'] = cidr.split('/');
  const value = ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
  const size = 2 ** (32 - Number(bits));
  const start = value - (value % size);
  return [start, start + size - 1];
}

function deleteBridgeSync(name: string): void {
  try {
    execFileSync(toolPath('ip'), ['link', 'delete', name, 'type', 'bridge'], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // Already gone.
  }
}

// --- leftovers ----------------------------------------------------------------------------------------------

/** SIGKILLs every process whose command line names one of our paths, and all their descendants. */
function killProcessesMentioning(markers: string[]): void {
  const parents = new Map<number, number>();
  const matched = new Set<number>();
  for (const entry of safeReaddir('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(pid, ppid);
      if (markers.some((m) => cmdline.includes(m))) matched.add(pid);
    } catch {
      // The process ended while we looked.
    }
  }
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!matched.has(pid) && matched.has(ppid)) {
        matched.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of matched) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

function mountsUnder(dirs: string[]): string[] {
  let mountinfo = '';
  try {
    mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  return mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))))
    .filter((p) => dirs.some((d) => p === d || p.startsWith(`${d}/`)));
}

function unmountUnder(dirs: string[]): void {
  // Deepest first, lazily: a busy mount must not stop the others from going.
  for (const mountPoint of mountsUnder(dirs).sort((a, b) => b.length - a.length)) {
    try {
      execFileSync(toolPath('umount'), ['-l', mountPoint], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // Reported by the caller through mountsUnder.
    }
  }
}

// --- small helpers ------------------------------------------------------------------------------------------

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ socketPath, path: '/_ping', timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

async function httpOk(url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await response.body?.cancel();
  return response.ok;
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(toolPath(command), args, { timeout: COMMAND_MS, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

function toolPath(name: string): string {
  return findExecutable(name, false) ?? name;
}

function findExecutable(name: string, required: true): string;
function findExecutable(name: string, required: false): string | undefined;
function findExecutable(name: string): string;
function findExecutable(name: string, required = true): string | undefined {
  const dirs = `${process.env.PATH ?? ''}:${SYSTEM_PATH}`.split(':').filter(Boolean);
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // Not in this directory.
    }
  }
  if (required) throw new Error(`docker: ${name} is not installed; run \`bash stack/provision.sh\` first`);
  return undefined;
}

/** Walks up from this module until the given relative path exists (sources run from stack/, builds from dist/stack/). */
function findUp(relative: string): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 5; depth++) {
    const candidate = path.join(dir, relative);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`docker: cannot find ${relative} above ${fileURLToPath(import.meta.url)}`);
}

async function listFiles(root: string, prefix = ''): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(path.join(root, prefix), { withFileTypes: true })) {
    const relative = path.join(prefix, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(root, relative)));
    else files.push(relative);
  }
  return files;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`docker: ${what} took longer than ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
