/** The bundled example: a service taken through deploy, approval, a failing version and its automatic rollback. */
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { simpleGit } from 'simple-git';
import { deploymentIdOf } from '../domain/deployment.js';
import { renderReport } from '../domain/report.js';
import { reportsDirFromEnv } from '../worker/index.js';
import { untilInterrupted } from '../worker/main.js';
import type { WorkflowHandle } from '@temporalio/client';
import { connect } from '../client/connection.js';
import { startDeploy } from '../client/deploy.js';
import { follow } from '../client/follow.js';
import { printLine } from '../client/output.js';
import { workflowLink } from '../client/settings.js';
import { loadSpecFile } from '../client/spec-file.js';
import { fetchStatus } from '../client/status.js';
import { castVote } from '../client/vote.js';
import { voteSignal } from '../workflows/messages.js';
import { startDevStack } from './dev.js';
import { writePolicy } from './policy.js';
import { buildServiceImage, startLocalDockerStack } from './docker.js';
import { startKubeControlPlane } from './kube.js';
import { freePort } from './processes.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
/** The second release fails: on Docker its health check answers 503, on Kubernetes its pods never get ready. */
const RELEASES = [
  { version: '1.0.0', healthy: true, manifests: 'good', change: 'First release of the shop front' },
  { version: '1.1.0', healthy: false, manifests: 'bad', change: 'New checkout page (it never becomes ready)' },
];
type Release = (typeof RELEASES)[number];

const fill = (template: string, values: Record<string, string>) =>
  template.replace(/\$\{(\w+)\}/g, (_, name: string) => values[name] ?? '');

async function portOr(preferred: number): Promise<number> {
  return (await isFree(preferred)) ? preferred : freePort();
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A real git history for change tracking: one commit and tag per release. */
async function createSourceRepository(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const git = simpleGit({ baseDir: dir });
  await git.init().addConfig('user.name', 'Demo Developer').addConfig('user.email', 'dev@example.com');
  for (const release of RELEASES) {
    await writeFile(join(dir, 'CHANGELOG.md'), `${release.version}: ${release.change}\n`, { flag: 'a' });
    await writeFile(join(dir, `release-${release.version}.txt`), `${release.change}\n`);
    await git.add('.').commit(release.change).addTag(`v${release.version}`);
  }
}

interface Prepared {
  /** The spec file deploying one release. */
  specFor: (release: Release) => Promise<string>;
  /** Where the live release can be seen. */
  where: string;
  /** How the worker reaches production: the target block of the platform policy. */
  production: Record<string, unknown>;
}

type DockerStack = Awaited<ReturnType<typeof startLocalDockerStack>>;

async function prepareDocker(workDir: string, docker: DockerStack): Promise<Prepared> {
  const port = await freePort();
  const specFile = join(workDir, 'deploy.yaml');
  const template = await readFile(join(EXAMPLES, 'demo', 'deploy.yaml'), 'utf8');
  await writeFile(specFile, fill(template, { REGISTRY: docker.registry.address }));
  return {
    specFor: () => Promise.resolve(specFile),
    where: `on http://127.0.0.1:${port}/version`,
    production: { docker: { host: docker.engine.dockerHost, ports: { 'web-shop': port }, env: { LOG_LEVEL: 'info' } } },
  };
}

async function prepareKubernetes(
  workDir: string,
  docker: DockerStack,
  stops: (() => Promise<void>)[],
): Promise<Prepared> {
  printLine('Starting a Kubernetes control plane (etcd, API server, controllers, scheduler, kwok nodes)...');
  const plane = await startKubeControlPlane(join(workDir, 'kube'));
  stops.push(() => plane.stop());
  const config = new KubeConfig();
  config.loadFromFile(plane.kubeconfigPath);
  await config.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'shop' } } });
  printLine(`  kubectl --kubeconfig ${plane.kubeconfigPath} -n shop get deploy,rs,pods,cm`);
  const template = await readFile(join(EXAMPLES, 'demo', 'deploy-kubernetes.yaml'), 'utf8');
  return {
    where: `in namespace shop (kubeconfig ${plane.kubeconfigPath})`,
    production: { kubernetes: { kubeconfig: plane.kubeconfigPath, namespace: 'shop' } },
    specFor: async (release) => {
      const manifests = join(workDir, 'manifests', release.manifests);
      await cp(join(EXAMPLES, 'kubernetes', release.manifests), manifests, { recursive: true });
      for (const file of await readdir(manifests))
        await writeFile(
          join(manifests, file),
          fill(await readFile(join(manifests, file), 'utf8'), { REGISTRY: docker.registry.address }),
        );
      const specFile = join(workDir, `deploy-${release.version}.yaml`);
      const values = { REGISTRY: docker.registry.address, MANIFESTS: manifests };
      await writeFile(specFile, fill(template, values));
      return specFile;
    },
  };
}

/** The demo's platform policy: production is protected, approvals by a named user or a group. */
function demoPolicy(workDir: string, production: Record<string, unknown>): Record<string, unknown> {
  return {
    // Names nobody proves: every report of this mode says so. A real worker verifies OpenID Connect tokens.
    identity: { insecureDevMode: true },
    sourceRoots: [workDir],
    environments: {
      production: {
        ...production,
        protected: true,
        deployers: ['ci-bot'],
        approval: { required: 1, approvers: ['alice', 'group:release-managers', 'bob'], deadline: '24h' },
        rollbackRequiresApproval: true,
      },
    },
  };
}

export async function demoCommand(options: { exit?: boolean; target?: string }): Promise<number> {
  const target = options.target ?? 'docker';
  if (target !== 'docker' && target !== 'kubernetes')
    throw new Error(`--target ${target}: expected docker or kubernetes`);
  const exitAtEnd = options.exit === true || process.env.DEPLOY_AGENT_DEMO_EXIT === '1';
  const workDir = await mkdtemp(join(tmpdir(), 'deploy-agent-demo-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    printLine('Starting a Docker engine and an image registry on loopback...');
    const docker = await startLocalDockerStack(join(workDir, 'docker'));
    stops.push(() => docker.stop());
    const repository = `${docker.registry.address}/web-shop`;
    for (const release of RELEASES) {
      // On Kubernetes the failure comes from the release's manifests; kwok runs no image.
      const healthy = target === 'kubernetes' || release.healthy;
      const image = await buildServiceImage(docker, { repository, version: release.version, healthy });
      printLine(`  built ${image.reference}`);
    }
    await createSourceRepository(join(workDir, 'web-shop-source'));
    const prepare = target === 'kubernetes' ? prepareKubernetes : prepareDocker;
    const { specFor, where, production } = await prepare(workDir, docker, stops);
    const policyFile = await writePolicy(join(workDir, 'policy.yaml'), demoPolicy(workDir, production));
    printLine(`Platform policy (the worker's, not the requester's): ${policyFile}`);

    const port = await portOr(7233);
    const uiPort = await portOr(port + 1000);
    printLine('Starting the Temporal dev server and a worker...');
    const reportsDir = resolve(reportsDirFromEnv());
    const temporal = await startDevStack({
      port,
      uiPort,
      reportsDir,
      policyFile,
      db: join(workDir, 'temporal.db'),
      logLevel: 'ERROR',
    });
    stops.unshift(() => temporal.stop());
    process.env.TEMPORAL_ADDRESS = temporal.address;
    process.env.TEMPORAL_UI_URL = temporal.uiUrl;
    printLine(`Temporal Web UI: ${temporal.uiUrl}`);

    const client = await connect();
    const outcomes: string[] = [];
    process.env.DEPLOY_AGENT_USER = 'ci-bot';
    for (const [index, release] of RELEASES.entries()) {
      const approver = index % 2 === 0 ? 'alice' : 'bob';
      printLine(`\n== ci-bot deploys web-shop ${release.version} to production ==`);
      const spec = await loadSpecFile(await specFor(release));
      const handle = await startDeploy(client, spec, { env: 'production', version: release.version });
      const deploymentId = deploymentIdOf(handle.workflowId, handle.firstExecutionRunId);
      printLine(`deployment ${deploymentId}\n${workflowLink(handle.workflowId, handle.firstExecutionRunId)}`);
      const progress = follow(handle, { live: true });
      await waitUntilAwaitingApproval(handle);
      await showForgedVotes(handle, approver);
      printLine(`  ${approver} approves`);
      await castVote(handle, {
        decision: 'approve',
        comment: `demo approval of ${release.version}`,
        credential: { kind: 'insecure-dev', user: approver },
      });
      const outcome = await progress;
      if (outcome.kind !== 'status') throw new Error(`deployment ${deploymentId}: ${outcome.kind}`);
      const { status } = outcome;
      printLine(`\n${renderReport(status)}`);
      outcomes.push(status.state);
    }
    printLine(`Outcomes: ${outcomes.join(', ')}. 1.0.0 serves ${where}`);
    printLine(`Reports: ${reportsDir}\nTemporal Web UI: ${temporal.uiUrl}`);
    if (!exitAtEnd) {
      printLine('\nThe stack stays up for you to look around. Ctrl-C stops it.');
      await untilInterrupted();
    }
    // The demo succeeds when the good release went live and the failing one was rolled back.
    return outcomes.join(',') === 'succeeded,rolled-back' ? 0 : 1;
  } finally {
    for (const stop of stops) await stop().catch((error: unknown) => printLine(`cleanup: ${String(error)}`));
    await rm(workDir, { recursive: true, force: true });
  }
}

/** What an attacker tries at the gate, refused next to the real approval: a vote in someone else's name, a self-approval. */
async function showForgedVotes(handle: WorkflowHandle, approver: string): Promise<void> {
  await handle.signal(voteSignal, { approver, decision: 'approve' });
  const selfApproval = await castVote(handle, {
    decision: 'approve',
    credential: { kind: 'insecure-dev', user: 'ci-bot' },
  }).then(
    () => 'counted (it should not have been)',
    (error: unknown) => (error as Error).message,
  );
  const status = await fetchStatus(handle);
  const forged = status.approval?.refused.find((r) => r.via === 'signal');
  printLine(`  a Signal claiming to be ${approver}: refused (${forged?.reason ?? 'not recorded yet'})`);
  printLine(`  ci-bot approving its own deploy: ${selfApproval}`);
}

async function waitUntilAwaitingApproval(handle: WorkflowHandle): Promise<void> {
  for (let attempt = 0; attempt < 240; attempt++) {
    const status = await fetchStatus(handle).catch(() => undefined);
    if (status?.state === 'awaiting-approval') return;
    if (status && status.finishedAt) throw new Error(`deployment ended before approval: ${status.state}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('deployment did not reach its approval gate within a minute');
}
