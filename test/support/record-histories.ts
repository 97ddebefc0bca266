/**
 * Records the workflow histories that test/workflows/replay.workflow.test.ts replays, on the real stack: the Temporal
 * dev server with a real worker, a Docker engine and registry, a Kubernetes control plane, and the CLI as CI runs it.
 * For each target: a deploy waiting at its approval gate, a deploy whose compensation failed (waiting for an operator),
 * a finished deploy and a finished manual rollback.
 *
 *   npm run record-histories                      # both targets
 *   npm run record-histories -- docker            # one target
 *   npm run record-histories -- --label after-x   # files named <target>-<scenario>.after-x.json
 *
 * The label defaults to today's date, so the histories of older workflow code stay next to new ones for as long as
 * runs of that code can still be open. Everything started here is stopped again, also when a scenario fails.
 */
import { realpathSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import * as prettier from 'prettier';
import { simpleGit } from 'simple-git';
import { startDevStack } from '../../stack/dev.js';
import { writePolicy } from '../../stack/policy.js';
import { type DeploymentStatus, FINAL_STATES, parseDeploymentId } from '../../domain/deployment.js';
import { buildServiceImage, type LocalDockerStack, startLocalDockerStack } from '../../stack/docker.js';
import { type KubeControlPlane, startKubeControlPlane } from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';
import { statusQuery, voteSignal } from '../../workflows/messages.js';
import { dataConverter } from '../../codec/data-converter.js';
import { type KeyRing, loadKeyRingFile } from '../../keys/key-ring.js';
import { plaintextOf, payloadsIn } from './history-payloads.js';
import { deploymentIdIn, runCli } from './cli.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HISTORIES = path.join(ROOT, 'test', 'fixtures', 'histories');
const MANIFESTS = path.join(ROOT, 'test', 'fixtures', 'kubernetes');
/** The recordings' payload keys, committed: they protect nothing but these fixtures, which the replay test opens. */
const FIXTURE_KEYS_FILE = path.join(ROOT, 'test', 'fixtures', 'payload-keys.json');
const TARGETS = ['docker', 'kubernetes'] as const;
type TargetKind = (typeof TARGETS)[number];
const VERSIONS = ['1.0.0', '1.1.0', '2.0.0'] as const;
/** Written over every identity in a history: worker and client identities name the machine they ran on. */
const IDENTITY = 'recorded';
const STEP_MS = 120_000;
/** Nothing of this machine belongs in a project file: its host name, home, and where the project and its packages are. */
const MACHINE = [
  `@${os.hostname()}`,
  os.homedir() + path.sep,
  ROOT,
  path.dirname(realpathSync(path.join(ROOT, 'node_modules'))) + path.sep,
];

function log(line: string): void {
  process.stdout.write(`record-histories: ${line}\n`);
}

/** Drives deployments through the CLI, watches them through the status query and writes their histories. */
class Recorder {
  private readonly open = new Set<string>();
  readonly written: string[] = [];

  constructor(
    private readonly client: Client,
    private readonly env: Record<string, string>,
    private readonly outDir: string,
    private readonly label: string,
    /** Values that must never appear in a history, e.g. the cluster token and the fixtures' Secret values. */
    readonly secrets: string[],
    private readonly keyRing: KeyRing,
  ) {}

  /** Starts a deploy or rollback with the CLI (without --wait) and returns its deployment id. */
  async start(user: string, args: string[]): Promise<string> {
    const result = await runCli(args, { ...this.env, DEPLOY_AGENT_USER: user });
    if (result.code !== 0) throw new Error(`deploy-agent ${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
    const id = deploymentIdIn(result.stdout);
    this.open.add(id);
    return id;
  }

  /** Casts a vote with the CLI that the gate must refuse (exit 2). */
  async refusedVote(user: string, args: string[]): Promise<void> {
    const result = await runCli(args, { ...this.env, DEPLOY_AGENT_USER: user });
    if (result.code !== 2)
      throw new Error(`deploy-agent ${args.join(' ')}: exit ${result.code}, expected 2\n${result.stderr}`);
  }

  handle(id: string): WorkflowHandle {
    const { workflowId, runId } = parseDeploymentId(id);
    return this.client.workflow.getHandle(workflowId, runId);
  }

  status(id: string): Promise<DeploymentStatus> {
    return this.handle(id).query(statusQuery);
  }

  /** Polls the status query until `done` holds; fails naming what it waited for and where the deployment stood. */
  async until(id: string, what: string, done: (s: DeploymentStatus) => boolean, timeoutMs = STEP_MS) {
    const deadline = Date.now() + timeoutMs;
    let last: DeploymentStatus | undefined;
    while (Date.now() < deadline) {
      last = await this.status(id).catch(() => last);
      if (last && done(last)) return last;
      if (last && FINAL_STATES.has(last.state)) break;
      await delay(200);
    }
    throw new Error(`${id}: ${what} did not happen; last status ${JSON.stringify(last, null, 2)}`);
  }

  /** Waits for the deployment to end in `state`. */
  async finished(id: string, state: DeploymentStatus['state']): Promise<DeploymentStatus> {
    const status = await this.until(id, `ending ${state}`, (s) => FINAL_STATES.has(s.state) || s.state === state);
    const result = (await this.handle(id).result()) as DeploymentStatus;
    this.open.delete(id);
    if (result.state !== state)
      throw new Error(`${id} ended ${result.state}, expected ${state}: ${result.errors.join('; ')}`);
    return status;
  }

  /** Writes the history as it stands now: for a deployment still open, the prefix up to where it waits. */
  async record(id: string, target: TargetKind, scenario: string): Promise<void> {
    const history = await this.handle(id).fetchHistory();
    const json = scrubMachine(JSON.parse(historyToJSON(history)));
    const leaked = await leaks(json, [...this.secrets, ...MACHINE], this.keyRing);
    if (leaked.length) throw new Error(`${id}: the history contains what it must not: ${leaked.join(', ')}`);
    const file = path.join(this.outDir, `${target}-${scenario}.${this.label}.json`);
    const text = await prettier.format(JSON.stringify(json), {
      // The project's style, wherever the file goes: the fixtures are checked with `prettier --check`.
      ...(await prettier.resolveConfig(path.join(HISTORIES, path.basename(file)))),
      filepath: file,
    });
    await writeFile(file, text);
    this.written.push(file);
    const events = (json as { events: unknown[] }).events.length;
    log(`${path.relative(ROOT, file)}: ${events} events, ${Math.round(text.length / 1024)} KiB`);
  }

  /** Ends what a scenario left open (a run waiting for approval or an operator); the history was taken before. */
  async terminateOpen(): Promise<void> {
    for (const id of this.open) {
      await this.handle(id)
        .terminate('history recorded')
        .catch(() => undefined);
      this.open.delete(id);
    }
  }
}

/**
 * What in a history names the machine it was recorded on, made neutral: worker and client identities, the worker's
 * sticky task queue (named after its host), and the file paths in failures' stack traces. Replay reads none of them.
 */
function scrubMachine(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(scrubMachine);
  if (value === null || typeof value !== 'object') return value;
  const record = value as Record<string, unknown>;
  if (record.kind === 'TASK_QUEUE_KIND_STICKY' && typeof record.normalName === 'string')
    return { ...record, name: `${record.normalName}-sticky` };
  return Object.fromEntries(
    Object.entries(record).map(([key, v]) => {
      if (key === 'identity' && typeof v === 'string') return [key, IDENTITY];
      if (key === 'stackTrace' && typeof v === 'string')
        return [
          key,
          v
            .split('\n')
            .filter((line) => !/^\s+at /.test(line))
            .join('\n'),
        ];
      return [key, scrubMachine(v)];
    }),
  );
}

/** Which of the forbidden strings occur in the history, payloads opened (they are base64, and encrypted, in it). */
async function leaks(json: unknown, forbidden: string[], keyRing: KeyRing): Promise<string[]> {
  const texts: string[] = [JSON.stringify(json)];
  for (const { payload } of payloadsIn(json)) texts.push(await plaintextOf(payload, keyRing));
  return forbidden.filter((f) => f && texts.some((t) => t.includes(f)));
}

// --- scenarios ---------------------------------------------------------------------------------------------------

/** What every target's scenarios share: the deploy.yaml they use, the CLI's arguments, and how to break a restore. */
interface TargetScenarios {
  kind: TargetKind;
  /** How the worker's policy reaches this target in each environment. */
  policy: Record<string, unknown>;
  /** A spec file for the given version; Kubernetes releases of 2.0.0 use manifests whose pods never get ready. */
  spec(version: string): Promise<string>;
  /** Makes the restore of a running compensation impossible, once the rollback point was taken. */
  breakRestore(recorder: Recorder, id: string): Promise<string>;
}

async function recordTarget(recorder: Recorder, target: TargetScenarios): Promise<void> {
  const deploy = async (env: string, version: string) =>
    recorder.start('ci-bot', ['deploy', '-f', await target.spec(version), '--env', env, '--version', version]);
  const { kind } = target;
  try {
    // A deploy waiting at its approval gate, with refused votes recorded: the requester's own, by signal, and an
    // approver's approval of other content than the plan's.
    const waiting = await deploy('production', '1.0.0');
    await recorder.until(waiting, 'awaiting approval', (s) => s.state === 'awaiting-approval');
    await recorder.handle(waiting).signal(voteSignal, { approver: 'ci-bot', decision: 'approve' });
    await recorder.until(waiting, 'the refused vote', (s) => (s.approval?.refused.length ?? 0) > 0);
    await recorder.refusedVote('alice', ['approve', waiting, '--content-hash', `sha256:${'0'.repeat(64)}`]);
    await recorder.until(waiting, 'the refused approval', (s) => (s.approval?.refused.length ?? 0) > 1);
    await recorder.record(waiting, kind, 'approval-waiting');
    await recorder.terminateOpen();

    // Deploy 1.0.0 and 1.1.0, then a manual rollback to 1.0.0.
    await recorder.finished(await deploy('staging', '1.0.0'), 'succeeded');
    const upgrade = await deploy('staging', '1.1.0');
    await recorder.finished(upgrade, 'succeeded');
    await recorder.record(upgrade, kind, 'deploy-succeeded');
    const rollback = await recorder.start('oncall', ['rollback', '-f', await target.spec('1.0.0'), '--env', 'staging']);
    await recorder.finished(rollback, 'succeeded');
    await recorder.record(rollback, kind, 'manual-rollback');

    // A release that fails its health check or rollout, whose restore then fails: the run waits for an operator.
    await recorder.finished(await deploy('canary', '1.0.0'), 'succeeded');
    const failing = await deploy('canary', '2.0.0');
    const how = await target.breakRestore(recorder, failing);
    log(`${kind}: ${how}`);
    const stuck = await recorder.until(failing, 'compensation-failed', (s) => s.state === 'compensation-failed');
    log(`${kind}: compensation failed: ${stuck.rollback?.errors.join('; ')}`);
    await recorder.record(failing, kind, 'compensation-failed');
  } finally {
    await recorder.terminateOpen();
  }
}

/** The recording's platform policy: names are not proven (insecure dev mode), three environments per target. */
function recordingPolicy(workDir: string, target: (name: 'staging' | 'production' | 'canary') => object) {
  return {
    identity: { insecureDevMode: true },
    sourceRoots: [workDir],
    environments: {
      staging: target('staging'),
      production: {
        ...target('production'),
        protected: true,
        deployers: ['ci-bot'],
        approval: { required: 1, approvers: ['alice', 'bob'], deadline: '24h' },
        rollbackRequiresApproval: true,
      },
      canary: { ...target('canary'), budgets: { environmentUpdate: '30s', rollback: '5s' } },
    },
  };
}

async function dockerScenarios(workDir: string, docker: LocalDockerStack): Promise<TargetScenarios> {
  const ports = {
    staging: String(await freePort()),
    production: String(await freePort()),
    canary: String(await freePort()),
  };
  const file = path.join(workDir, 'docker-deploy.yaml');
  await writeFile(
    file,
    `service: web-shop
target: docker
image:
  repository: ${docker.registry.address}/web-shop
container:
  resources: { memory: 64m, cpus: 0.5 }
healthCheck:
  path: /health
  interval: 200ms
  timeout: 1s
  healthyWithin: 15s
source:
  repository: ./source
`,
  );
  return {
    kind: 'docker',
    policy: recordingPolicy(workDir, (name) => ({
      docker: { host: docker.engine.dockerHost, ports: { 'web-shop': Number(ports[name]) } },
    })),
    spec: () => Promise.resolve(file),
    async breakRestore(recorder, id) {
      // Once the new container runs and its health check is under way, the engine goes away.
      await recorder.until(id, 'the verify phase', (s) => s.phase === 'verify');
      await docker.engine.stop();
      return 'stopped the Docker engine during verify, after apply and before the restore';
    },
  };
}

async function kubernetesScenarios(
  workDir: string,
  docker: LocalDockerStack,
  plane: KubeControlPlane,
): Promise<TargetScenarios> {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(plane.kubeconfigPath);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const namespaces = { staging: 'shop', production: 'shop-production', canary: 'shop-canary' };
  // Created as a platform team would: pods that break the restricted standard are refused (a protected environment's
  // security rules require the label).
  const labels = { 'pod-security.kubernetes.io/enforce': 'restricted' };
  for (const name of Object.values(namespaces)) await core.createNamespace({ body: { metadata: { name, labels } } });
  const specs = new Map<string, string>();
  for (const release of ['web-shop', 'web-shop-v2']) {
    const dir = path.join(workDir, `release-${release}`);
    await cp(path.join(MANIFESTS, release), dir, { recursive: true });
    for (const manifest of await readdir(dir)) {
      const text = await readFile(path.join(dir, manifest), 'utf8');
      await writeFile(path.join(dir, manifest), text.replaceAll('127.0.0.1:5000', docker.registry.address));
    }
    const file = path.join(workDir, `kubernetes-${release}.yaml`);
    await writeFile(
      file,
      `service: web-shop
target: kubernetes
image:
  repository: ${docker.registry.address}/web-shop
release:
  manifests: ./release-${release}
healthCheck:
  healthyWithin: 20s
source:
  repository: ./source
`,
    );
    specs.set(release, file);
  }
  return {
    kind: 'kubernetes',
    policy: recordingPolicy(workDir, (name) => ({
      kubernetes: { kubeconfig: plane.kubeconfigPath, namespace: namespaces[name] },
      // The fixtures keep a Secret in their manifests: restore must prove a rotated Secret reverted. Flagged, not refused.
      security: { 'no-secret-manifests': 'warn' },
    })),
    spec: (version) => Promise.resolve(specs.get(version === '2.0.0' ? 'web-shop-v2' : 'web-shop') ?? ''),
    async breakRestore(recorder, id) {
      // The rollback point is a revision Secret next to the workload: delete it once it was taken.
      const status = await recorder.until(id, 'the rollback point', (s) => s.previous?.handle !== undefined);
      const name = status.previous?.handle ?? '';
      await core.deleteNamespacedSecret({ name, namespace: namespaces.canary });
      return `deleted the rollback point (revision Secret ${name}) after it was taken, before the restore`;
    },
  };
}

// --- the stack -----------------------------------------------------------------------------------------------------

async function sourceRepository(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const git = simpleGit({ baseDir: dir });
  await git.init().addConfig('user.name', 'Dev').addConfig('user.email', 'dev@example.com');
  for (const version of VERSIONS) {
    await writeFile(path.join(dir, `feature-${version}.txt`), `${version}\n`);
    await git.add('.').commit(`feature for ${version}`).addTag(`v${version}`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { label: { type: 'string' }, out: { type: 'string' } },
  });
  const unknown = positionals.filter((p) => !(TARGETS as readonly string[]).includes(p));
  if (unknown.length) throw new Error(`unknown target ${unknown.join(', ')}; expected ${TARGETS.join(' or ')}`);
  const targets = positionals.length ? (positionals as TargetKind[]) : [...TARGETS];
  const label = values.label ?? new Date().toISOString().slice(0, 10);
  if (!/^[\w.-]+$/.test(label)) throw new Error(`--label ${label}: letters, digits, dots and dashes only`);
  const outDir = path.resolve(values.out ?? HISTORIES);
  await mkdir(outDir, { recursive: true });

  const workDir = await mkdtemp(path.join(os.tmpdir(), 'deploy-histories-'));
  const stops: { what: string; stop: () => Promise<void> }[] = [];
  let failed = false;
  try {
    log('starting the Docker engine and registry');
    const docker = await startLocalDockerStack(path.join(workDir, 'docker'));
    stops.push({ what: 'Docker engine and registry', stop: () => docker.stop() });
    for (const version of VERSIONS)
      await buildServiceImage(docker, {
        repository: `${docker.registry.address}/web-shop`,
        version,
        healthy: version !== '2.0.0',
      });
    await sourceRepository(path.join(workDir, 'source'));

    let plane: KubeControlPlane | undefined;
    if (targets.includes('kubernetes')) {
      log('starting the Kubernetes control plane');
      plane = await startKubeControlPlane(path.join(workDir, 'kube'));
      stops.push({ what: 'Kubernetes control plane', stop: () => (plane as KubeControlPlane).stop() });
    }

    log('starting the Temporal dev server and a worker');
    // The worker, this process's client and every CLI run seal payloads with the fixtures' keys.
    const keyRing = loadKeyRingFile(FIXTURE_KEYS_FILE);
    // The worker reads its policy at each admission: each target's scenarios write theirs before they start.
    const policyFile = path.join(workDir, 'policy.yaml');
    const useTarget = async (scenarios: TargetScenarios) => {
      await writePolicy(policyFile, scenarios.policy);
      await recordTarget(recorder, scenarios);
    };
    const first = plane ? await kubernetesScenarios(workDir, docker, plane) : await dockerScenarios(workDir, docker);
    await writePolicy(policyFile, first.policy);
    const temporal = await startDevStack({
      port: await freePort(),
      uiPort: await freePort(),
      reportsDir: path.join(workDir, 'reports'),
      policyFile,
      logLevel: 'ERROR',
      keyRing,
    });
    stops.push({ what: 'Temporal dev server and worker', stop: () => temporal.stop() });
    const connection = await Connection.connect({ address: temporal.address });
    stops.push({ what: 'Temporal connection', stop: () => connection.close() });
    const client = new Client({
      connection,
      namespace: temporal.namespace,
      identity: IDENTITY,
      dataConverter: dataConverter(keyRing),
    });
    const env = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_UI_URL: temporal.uiUrl,
      DEPLOY_AGENT_KEYS_FILE: FIXTURE_KEYS_FILE,
    };
    const secrets = ['fixture-key', 'BEGIN CERTIFICATE', 'PRIVATE KEY', ...(plane ? [plane.token] : [])];
    const recorder = new Recorder(client, env, outDir, label, secrets, keyRing);

    // Kubernetes first: the Docker scenarios end by stopping the engine (the registry both use stays up).
    if (plane) await useTarget(first);
    if (targets.includes('docker')) await useTarget(plane ? await dockerScenarios(workDir, docker) : first);
    log(`wrote ${recorder.written.length} histories to ${outDir}`);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    for (const { what, stop } of stops.reverse())
      await stop().catch((error: unknown) => {
        // A failure to stop one component must not keep the others running.
        log(`stopping ${what}: ${error instanceof Error ? error.message : String(error)}`);
      });
    await rm(workDir, { recursive: true, force: true });
    if (failed) log('failed; everything it started is stopped');
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `record-histories: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
