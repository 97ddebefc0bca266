// A real Kubernetes control plane for tests and demos: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok (fake kubelets), all on 127.0.0.1 with ports chosen at run time.
// Binaries come from stack/provision-kube.sh; this module never builds anything, so starting takes seconds.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml';
import { freePort, startProcess, waitUntilReady, type ManagedProcess } from './processes.js';

export interface KubeControlPlaneOptions {
  /** Number of kwok-managed Nodes to create (default 2). */
  nodes?: number;
}

export interface KubeControlPlane {
  /** Kubeconfig with a single context named "local", written into workDir. */
  kubeconfigPath: string;
  /** https://127.0.0.1:PORT */
  server: string;
  /** Bearer token of a member of system:masters. */
  token: string;
  /** Node names managed by kwok. */
  nodeNames: string[];
  /**
   * The kube-apiserver's self-signed serving certificate (leaf, then its CA, as the kubeconfig trusts it) and key:
   * a test proxy standing in for the API server can serve them, so the same kubeconfig trusts it too.
   */
  servingCertificate: { certFile: string; keyFile: string };
  /** Stops the kube-apiserver alone (SIGTERM, then SIGKILL after a grace period); etcd and the others keep running. */
  stopApiServer(): Promise<void>;
  /**
   * Starts the kube-apiserver again on the same port, with the same flags, certificates and etcd data, and resolves
   * once it is ready. Does nothing while it runs; throws after stop().
   */
  startApiServer(): Promise<void>;
  /** Stops every process started (process groups) and removes etcd's data. Safe to call twice. */
  stop(): Promise<void>;
}

/** Annotation on a pod template that makes kwok keep its pods Running but never Ready. */
export const SIMULATE_ANNOTATION = 'deploy-agent.dev/simulate';

// Every node kwok manages carries this annotation; kwok ignores any other node.
const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';
const CONTEXT = 'local';
const SERVICE_CLUSTER_IP_RANGE = '10.96.0.0/16';

const STEP_TIMEOUT_MS = {
  etcd: 20_000,
  apiserver: 90_000,
  component: 60_000,
  nodesReady: 60_000,
} as const;

const STOP_GRACE_MS = 5_000;
const REQUEST_TIMEOUT_MS = 5_000;

interface Paths {
  kubeBin: string;
  kwok: string;
  etcd: string;
  stages: string;
}

/** Repository root, found from this file whether it runs from source or from dist/. */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'stack', 'versions.sh'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('kube: cannot find stack/versions.sh above ' + fileURLToPath(import.meta.url));
}

/** Reads NAME=value pins from stack/versions.sh; the environment wins so a caller can try another version. */
function pinnedVersion(root: string, name: string): string {
  const fromEnv = process.env[name];
  if (fromEnv) return fromEnv;
  const text = readFileSync(path.join(root, 'stack', 'versions.sh'), 'utf8');
  const match = new RegExp(`^${name}=([^\\s#]+)`, 'm').exec(text);
  if (!match?.[1]) throw new Error(`kube: ${name} is not pinned in stack/versions.sh`);
  return match[1].replace(/^["']|["']$/g, '');
}

function cacheDir(): string {
  if (process.env.DEPLOY_AGENT_CACHE) return process.env.DEPLOY_AGENT_CACHE;
  const xdg = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(xdg, 'deploy-agent');
}

function findEtcd(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    const candidate = path.join(dir, 'etcd');
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new Error('kube: etcd not found on PATH; run stack/provision-kube.sh');
}

/** Where stack/provision-kube.sh puts the Kubernetes binaries of the pinned version. */
function kubeBinDir(root = repoRoot()): string {
  return path.join(cacheDir(), `kubernetes-${pinnedVersion(root, 'KUBE_VERSION')}`, 'bin');
}

/** kubectl at the control plane's own version, as stack/provision-kube.sh builds it beside the servers. */
export function kubectlPath(): string {
  const kubectl = path.join(kubeBinDir(), 'kubectl');
  if (!existsSync(kubectl)) throw new Error(`kube: ${kubectl} is missing; run stack/provision-kube.sh`);
  return kubectl;
}

function resolvePaths(): Paths {
  const root = repoRoot();
  const kubeBin = kubeBinDir(root);
  const kwok = path.join(cacheDir(), `kwok-${pinnedVersion(root, 'KWOK_VERSION')}`, 'kwok');
  for (const bin of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']
    .map((b) => path.join(kubeBin, b))
    .concat(kwok)) {
    if (!existsSync(bin)) throw new Error(`kube: ${bin} is missing; run stack/provision-kube.sh`);
  }
  return { kubeBin, kwok, etcd: findEtcd(), stages: path.join(root, 'stack', 'kube', 'kwok-stages.yaml') };
}

// Local servers must never be reached through a proxy the environment may define.
function processEnv(): NodeJS.ProcessEnv {
  const local = '127.0.0.1,localhost';
  return { ...process.env, NO_PROXY: local, no_proxy: local };
}

/** Returns how it ended, for logs/stop.log: a process that needs SIGKILL slows every test's teardown. */
async function stopAndReport(p: ManagedProcess): Promise<string> {
  const started = Date.now();
  const wasRunning = p.exited === undefined;
  await p.stop({ graceMs: STOP_GRACE_MS });
  const how = wasRunning ? 'stopped' : 'had already exited';
  return `${p.name}: ${how} in ${Date.now() - started} ms, exit ${JSON.stringify(p.exited ?? null)}`;
}

/** Distinct free ports: two servers asked in a row could otherwise get the same one. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempt = 0; ports.size < count && attempt < count * 10; attempt++) ports.add(await freePort());
  if (ports.size < count) throw new Error('kube: could not find free ports');
  return [...ports];
}

interface HttpResult {
  status: number;
  body: string;
}

interface RequestOptions {
  method?: string;
  token?: string;
  ca?: string;
  body?: unknown;
  contentType?: string;
  timeoutMs?: number;
}

function request(url: string, options: RequestOptions = {}): Promise<HttpResult> {
  const u = new URL(url);
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  if (body !== undefined) {
    headers['Content-Type'] = options.contentType ?? 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(body));
  }
  return new Promise((resolve, reject) => {
    const common = { method: options.method ?? 'GET', headers, timeout: options.timeoutMs ?? REQUEST_TIMEOUT_MS };
    const onResponse = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    };
    const req =
      u.protocol === 'https:'
        ? // Health endpoints of the controller-manager and scheduler use their own throwaway certificates.
          https.request(
            u,
            { ...common, agent: false, ca: options.ca, rejectUnauthorized: options.ca !== undefined },
            onResponse,
          )
        : http.request(u, { ...common, agent: false }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`timeout after ${common.timeout} ms: ${url}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Polls check() until it yields a value; fails early, quoting the log, if the process that should serve it dies. */
async function waitFor<T>(
  what: string,
  timeoutMs: number,
  owner: ManagedProcess,
  check: () => Promise<T | undefined>,
): Promise<T> {
  let value: T | undefined;
  try {
    await waitUntilReady(owner, {
      timeoutMs,
      intervalMs: 200,
      probeTimeoutMs: REQUEST_TIMEOUT_MS + 1_000,
      probe: async () => {
        value = await check();
        return value !== undefined;
      },
    });
  } catch (err) {
    throw new Error(`kube: waiting for ${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return value as T;
}

// ---------------------------------------------------------------------------------------------------------------

function writeKubeconfig(file: string, server: string, caPem: string, token: string, user = 'admin'): Promise<void> {
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: CONTEXT, cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') } },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: CONTEXT, context: { cluster: CONTEXT, user } }],
    'current-context': CONTEXT,
    preferences: {},
  };
  return writeFile(file, toYaml(config), { mode: 0o600 });
}

function nodeManifest(name: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node-role.kubernetes.io/agent': '',
        type: 'kwok',
      },
    },
    spec: {},
  };
}

interface NodeList {
  items: { metadata: { name: string }; status?: { conditions?: { type: string; status: string }[] } }[];
}

/**
 * Starts the control plane in workDir (kubeconfig, certificates, logs/). Throws, after stopping whatever it started,
 * if any step does not become ready in time.
 */
export async function startKubeControlPlane(
  workDir: string,
  options: KubeControlPlaneOptions = {},
): Promise<KubeControlPlane> {
  const nodeCount = options.nodes ?? 2;
  if (!Number.isInteger(nodeCount) || nodeCount < 0 || nodeCount > 50)
    throw new Error(`kube: nodes must be 0..50, got ${nodeCount}`);
  const bins = resolvePaths();

  workDir = path.resolve(workDir);
  const logDir = path.join(workDir, 'logs');
  const certDir = path.join(workDir, 'pki');
  await mkdir(logDir, { recursive: true });
  await mkdir(certDir, { recursive: true });

  const processes: ManagedProcess[] = [];
  const start = async (name: string, command: string, args: string[]): Promise<ManagedProcess> => {
    const child = await startProcess({
      name,
      command,
      args,
      logFile: path.join(logDir, `${name}.log`),
      env: processEnv(),
    });
    processes.push(child);
    return child;
  };
  let dataDir: string | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      const report: string[] = [];
      for (const p of [...processes].reverse()) report.push(await stopAndReport(p));
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
      await writeFile(path.join(logDir, 'stop.log'), report.join('\n') + '\n', { flag: 'a' }).catch(() => undefined);
    })();
    return stopped;
  };

  try {
    const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = (await freePorts(5)) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const token = randomBytes(24).toString('hex');
    const server = `https://127.0.0.1:${apiPort}`;

    // In the work dir, not on tmpfs: about 0.8 s slower to start here, but a crashed caller leaves nothing outside it.
    dataDir = await mkdtemp(path.join(workDir, 'etcd-data-'));
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    const etcd = await start('etcd', bins.etcd, [
      '--name=local',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=local=${peerUrl}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-level=warn',
    ]);
    await waitFor('etcd /health', STEP_TIMEOUT_MS.etcd, etcd, async () => {
      const res = await request(`${etcdUrl}/health`);
      return res.status === 200 && res.body.includes('true') ? true : undefined;
    });

    const tokenFile = path.join(workDir, 'tokens.csv');
    await writeFile(tokenFile, `${token},admin,admin-uid,system:masters\n`, { mode: 0o600 });
    const saKey = path.join(certDir, 'service-account.key');
    const saPub = path.join(certDir, 'service-account.pub');
    const keys = generateKeyPairSync('rsa', { modulusLength: 2048 });
    await writeFile(saKey, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    await writeFile(saPub, keys.publicKey.export({ type: 'spki', format: 'pem' }));
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${certDir}`,
      `--token-auth-file=${tokenFile}`,
      '--authorization-mode=RBAC',
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
      '--endpoint-reconciler-type=none',
      // With WatchList on (the default since 1.34) the server turns every watch from resourceVersion "" or "0"
      // into a watch-list stream, which needs etcd's watch progress requests (etcd >= 3.4.31 or 3.5.13).
      // Against Debian's etcd 3.4.23 such watches fail at once and clients back off for up to half a minute:
      // kwok, which always watches from "0", then reacts to new pods only every ten seconds or so.
      '--feature-gates=WatchList=false',
      '--profiling=false',
      '--v=1',
    ];
    const startApiServerProcess = () =>
      start('kube-apiserver', path.join(bins.kubeBin, 'kube-apiserver'), apiserverArgs);
    let apiserver = await startApiServerProcess();
    // The self-signed serving certificate (leaf followed by its CA) appears in cert-dir before the port opens.
    const caPem = await waitFor(
      'kube-apiserver serving certificate',
      STEP_TIMEOUT_MS.apiserver,
      apiserver,
      async () => {
        const pem = await readFile(path.join(certDir, 'apiserver.crt'), 'utf8').catch(() => '');
        return pem.includes('END CERTIFICATE') ? pem : undefined;
      },
    );
    const apiServerReady = (what: string) =>
      waitFor(what, STEP_TIMEOUT_MS.apiserver, apiserver, async () => {
        const res = await request(`${server}/readyz`, { token, ca: caPem });
        return res.status === 200 ? true : undefined;
      });
    await apiServerReady('kube-apiserver /readyz');

    const kubeconfigPath = path.join(workDir, 'kubeconfig');
    await writeKubeconfig(kubeconfigPath, server, caPem, token);

    // controller-manager and scheduler serve only health and metrics here; keep them on loopback too.
    const controllerManager = await start(
      'kube-controller-manager',
      path.join(bins.kubeBin, 'kube-controller-manager'),
      [
        `--kubeconfig=${kubeconfigPath}`,
        `--authentication-kubeconfig=${kubeconfigPath}`,
        `--authorization-kubeconfig=${kubeconfigPath}`,
        '--leader-elect=false',
        '--bind-address=127.0.0.1',
        `--secure-port=${cmPort}`,
        `--cert-dir=${path.join(certDir, 'controller-manager')}`,
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${path.join(certDir, 'apiserver.crt')}`,
        `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
        '--use-service-account-credentials=false',
        // kwok's nodes stop heartbeating while the API server is down for a fault test; with the default grace
        // of 50 s a slow restart would mark them NotReady and their pods unready for good (kwok never readies a
        // pod twice). Real kubelets come back and re-report; these must not be judged by their silence so soon.
        '--node-monitor-grace-period=5m',
        '--profiling=false',
        '--v=1',
      ],
    );
    const scheduler = await start('kube-scheduler', path.join(bins.kubeBin, 'kube-scheduler'), [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      `--cert-dir=${path.join(certDir, 'scheduler')}`,
      '--profiling=false',
      '--v=1',
    ]);
    const kwok = await start('kwok', bins.kwok, [
      `--kubeconfig=${kubeconfigPath}`,
      `--config=${bins.stages}`,
      '--manage-all-nodes=false',
      `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
      '--node-ip=127.0.0.1',
      '--cidr=10.244.0.0/16',
      // Without a KwokConfiguration document kwok keeps no node Leases; real kubelets do, and the node lifecycle
      // controller treats a renewed Lease as a heartbeat between the slower status updates of node-heartbeat.
      '--node-lease-duration-seconds=40',
    ]);

    for (const [p, port] of [
      [controllerManager, cmPort],
      [scheduler, schedPort],
    ] as const) {
      await waitFor(`${p.name} /healthz`, STEP_TIMEOUT_MS.component, p, async () => {
        const res = await request(`https://127.0.0.1:${port}/healthz`);
        return res.status === 200 ? true : undefined;
      });
    }

    const nodeNames = Array.from({ length: nodeCount }, (_, i) => `kwok-node-${i}`);
    for (const name of nodeNames) {
      const res = await request(`${server}/api/v1/nodes`, {
        method: 'POST',
        token,
        ca: caPem,
        body: nodeManifest(name),
      });
      if (res.status !== 201 && res.status !== 409)
        throw new Error(`kube: creating node ${name}: HTTP ${res.status} ${res.body}`);
    }
    if (nodeCount > 0) {
      await waitFor(`${nodeCount} kwok nodes Ready`, STEP_TIMEOUT_MS.nodesReady, kwok, async () => {
        const res = await request(`${server}/api/v1/nodes`, { token, ca: caPem });
        if (res.status !== 200) return undefined;
        const list = JSON.parse(res.body) as NodeList;
        const ready = list.items.filter(
          (n) =>
            nodeNames.includes(n.metadata.name) &&
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length === nodeCount ? true : undefined;
      });
    }

    // It finds its certificate and key in cert-dir and keeps them; etcd keeps every object meanwhile.
    const startApiServer = async (): Promise<void> => {
      if (stopped) throw new Error('kube: the control plane was stopped');
      if (apiserver.exited === undefined) return;
      apiserver = await startApiServerProcess();
      await apiServerReady('kube-apiserver /readyz after a restart');
    };
    const stopApiServer = async (): Promise<void> => {
      const report = await stopAndReport(apiserver);
      await writeFile(path.join(logDir, 'stop.log'), report + '\n', { flag: 'a' }).catch(() => undefined);
    };
    const servingCertificate = {
      certFile: path.join(certDir, 'apiserver.crt'),
      keyFile: path.join(certDir, 'apiserver.key'),
    };
    return { kubeconfigPath, server, token, nodeNames, servingCertificate, stopApiServer, startApiServer, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------------

export interface WorkerKubeconfigOptions {
  /** Namespaces the worker deploys to: each gets the example's Role and RoleBinding, and is created if missing. */
  namespaces: string[];
  /** Where to write the kubeconfig (mode 0600). */
  file: string;
  /** Lifetime of the ServiceAccount's token; the default (a day) outlasts any test run. */
  expirationSeconds?: number;
}

export interface WorkerKubeconfig {
  /** Kubeconfig with a single context named "local": the plane's server and CA, the ServiceAccount's bearer token. */
  kubeconfigPath: string;
  /** The user the API server sees, as its 403 messages name it: system:serviceaccount:NAMESPACE:NAME. */
  username: string;
}

/** The example every deployment of the worker starts from: tests grant exactly what the documentation does. */
const WORKER_RBAC = ['examples', 'kubernetes', 'worker-rbac.yaml'];
const DEFAULT_TOKEN_SECONDS = 24 * 3600;
const STACK_FIELD_MANAGER = 'deploy-agent-stack';
// The example names its per-namespace documents for one placeholder namespace; they are copied for each one asked.
const PER_NAMESPACE = new Set(['Role', 'RoleBinding']);
const RBAC_BASE = '/apis/rbac.authorization.k8s.io/v1';
const RESOURCES: Record<string, { base: string; plural: string; namespaced: boolean }> = {
  ServiceAccount: { base: '/api/v1', plural: 'serviceaccounts', namespaced: true },
  Role: { base: RBAC_BASE, plural: 'roles', namespaced: true },
  RoleBinding: { base: RBAC_BASE, plural: 'rolebindings', namespaced: true },
  ClusterRole: { base: RBAC_BASE, plural: 'clusterroles', namespaced: false },
  ClusterRoleBinding: { base: RBAC_BASE, plural: 'clusterrolebindings', namespaced: false },
};

interface RbacObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

async function readWorkerRbac(): Promise<RbacObject[]> {
  const file = path.join(repoRoot(), ...WORKER_RBAC);
  const objects: RbacObject[] = [];
  for (const document of parseAllDocuments(await readFile(file, 'utf8'))) {
    if (document.errors[0]) throw new Error(`kube: ${file}: ${document.errors[0].message}`);
    const object = document.toJS() as RbacObject | null;
    if (!object) continue;
    if (!RESOURCES[object.kind]) throw new Error(`kube: ${file}: ${object.kind} is not expected in the worker's RBAC`);
    objects.push(object);
  }
  return objects;
}

/**
 * A kubeconfig for the worker's ServiceAccount with exactly the rights examples/kubernetes/worker-rbac.yaml grants in
 * each of `namespaces`: tests that run the worker with it fail on any call the example forgot to allow, before a real
 * cluster does.
 */
export async function workerKubeconfig(
  plane: KubeControlPlane,
  options: WorkerKubeconfigOptions,
): Promise<WorkerKubeconfig> {
  if (options.namespaces.length === 0) throw new Error('kube: the worker needs at least one namespace');
  // The admin kubeconfig's CA, not a file of the plane's: the worker must trust exactly what the admin trusts.
  const adminConfig = parseYaml(await readFile(plane.kubeconfigPath, 'utf8')) as {
    clusters: { cluster: { 'certificate-authority-data': string } }[];
  };
  const caData = adminConfig.clusters[0]?.cluster['certificate-authority-data'];
  if (!caData) throw new Error(`kube: ${plane.kubeconfigPath} holds no certificate authority`);
  const caPem = Buffer.from(caData, 'base64').toString('utf8');
  const admin = async (what: string, urlPath: string, init: RequestOptions, ok: number[]): Promise<string> => {
    const res = await request(plane.server + urlPath, { ...init, token: plane.token, ca: caPem });
    if (!ok.includes(res.status)) throw new Error(`kube: ${what}: HTTP ${res.status} ${res.body}`);
    return res.body;
  };

  const objects = (await readWorkerRbac()).flatMap((object) =>
    PER_NAMESPACE.has(object.kind)
      ? options.namespaces.map((namespace) => ({ ...object, metadata: { ...object.metadata, namespace } }))
      : [object],
  );
  const accounts = objects.filter((o) => o.kind === 'ServiceAccount');
  const account = accounts[0];
  if (accounts.length !== 1 || !account?.metadata.namespace)
    throw new Error(`kube: ${WORKER_RBAC.join('/')} must hold exactly one ServiceAccount, with its namespace`);

  const namespaces = new Set(objects.flatMap((o) => (o.metadata.namespace ? [o.metadata.namespace] : [])));
  for (const name of namespaces)
    await admin(
      `creating namespace ${name}`,
      '/api/v1/namespaces',
      { method: 'POST', body: { metadata: { name } } },
      [201, 409],
    );
  for (const object of objects) {
    const resource = RESOURCES[object.kind] as (typeof RESOURCES)[string];
    const scope = resource.namespaced ? `/namespaces/${object.metadata.namespace}` : '';
    const query = new URLSearchParams({ fieldManager: STACK_FIELD_MANAGER, force: 'true' });
    await admin(
      `applying ${object.kind} ${object.metadata.namespace ?? ''}/${object.metadata.name}`,
      `${resource.base}${scope}/${resource.plural}/${object.metadata.name}?${query.toString()}`,
      { method: 'PATCH', body: object, contentType: 'application/apply-patch+yaml' },
      [200, 201],
    );
  }

  const { name, namespace } = account.metadata;
  const body = await admin(
    `requesting a token for ServiceAccount ${namespace}/${name}`,
    `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
    {
      method: 'POST',
      body: {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { expirationSeconds: options.expirationSeconds ?? DEFAULT_TOKEN_SECONDS },
      },
    },
    [200, 201],
  );
  const token = (JSON.parse(body) as { status?: { token?: string } }).status?.token;
  if (!token) throw new Error(`kube: the TokenRequest for ${namespace}/${name} returned no token`);
  const kubeconfigPath = path.resolve(options.file);
  await writeKubeconfig(kubeconfigPath, plane.server, caPem, token, name);
  return { kubeconfigPath, username: `system:serviceaccount:${namespace}:${name}` };
}
