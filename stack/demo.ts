/**
 * The bundled example: a service taken through deploy, approval, a failing version and its automatic rollback, with
 * every identity proven by a token of a real OpenID provider.
 */
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { simpleGit } from 'simple-git';
import { deploymentIdOf } from '../domain/deployment.js';
import { InvalidInput } from '../domain/failures.js';
import { writeNewKeyRing } from '../keys/key-ring.js';
import type { Credential } from '../domain/identity.js';
import { renderReport } from '../domain/report.js';
import { reportsDirFromEnv } from '../worker/index.js';
import { untilInterrupted } from '../worker/main.js';
import type { WorkflowHandle } from '@temporalio/client';
import { connect } from '../client/connection.js';
import { credentialFor } from '../client/credentials.js';
import { startDeploy } from '../client/deploy.js';
import { follow } from '../client/follow.js';
import { printLine } from '../client/output.js';
import { workflowLink } from '../client/settings.js';
import { loadSpecFile } from '../client/spec-file.js';
import { fetchStatus } from '../client/status.js';
import { castVote, contentToApprove } from '../client/vote.js';
import { voteSignal } from '../workflows/messages.js';
import { startDevStack } from './dev.js';
import { writePolicy } from './policy.js';
import { buildServiceImage, startLocalDockerStack } from './docker.js';
import { CI_PIPELINE, clientCredentialsEnv, passwordGrantToken, REALM_AUDIENCE, startKeycloak } from './keycloak.js';
import { startKubeControlPlane } from './kube.js';
import { freePort } from './processes.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
/** The second release fails: on Docker its health check answers 503, on Kubernetes its pods never get ready. */
const RELEASES = [
  { version: '1.0.0', healthy: true, manifests: 'good', change: 'First release of the shop front' },
  { version: '1.1.0', healthy: false, manifests: 'bad', change: 'New checkout page (it never becomes ready)' },
];
type Release = (typeof RELEASES)[number];
/** Pod security admission labels: the cluster refuses pods that break the restricted standard, and warns of them. */
const RESTRICTED_POD_SECURITY = {
  'pod-security.kubernetes.io/enforce': 'restricted',
  'pod-security.kubernetes.io/warn': 'restricted',
};

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
  // The platform team creates the namespace, and with it the pod security level the cluster enforces in it: the
  // restricted standard, which the security rules require of a protected environment.
  await config.makeApiClient(CoreV1Api).createNamespace({
    body: { metadata: { name: 'shop', labels: RESTRICTED_POD_SECURITY } },
  });
  printLine(`  kubectl --kubeconfig ${plane.kubeconfigPath} -n shop get deploy,rs,pods,cm`);
  const template = await readFile(join(EXAMPLES, 'demo', 'deploy-kubernetes.yaml'), 'utf8');
  return {
    where: `in namespace shop (kubeconfig ${plane.kubeconfigPath})`,
    production: {
      kubernetes: { kubeconfig: plane.kubeconfigPath, namespace: 'shop' },
      // The example release keeps a Secret in its manifests so that the demo shows a Secret restored with the rest.
      // That is not how production secrets should travel (they would sit in git): the rule stays on, as a warning the
      // report shows, instead of the refusal a protected environment gets by default.
      security: { 'no-secret-manifests': 'warn' },
    },
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

/**
 * The demo's platform policy: identities are the provider's tokens, verified by the worker; production is protected,
 * only CI deploys there, and one approval is needed, by a member of a provider group or by a named user.
 */
function demoPolicy(workDir: string, production: Record<string, unknown>, issuer: string): Record<string, unknown> {
  return {
    identity: { oidc: { issuer, audience: REALM_AUDIENCE } },
    sourceRoots: [workDir],
    environments: {
      production: {
        ...production,
        protected: true,
        deployers: [CI_PIPELINE.user],
        approval: { required: 1, approvers: ['group:approvers', 'alice'], deadline: '24h' },
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
    printLine('Starting the OpenID provider (Keycloak, realm deploy-agent) on loopback...');
    // Awaited only when the policy needs its issuer: its 20 s or more overlap the Docker engine's start and the builds.
    const keycloakStarting = startKeycloak(join(workDir, 'keycloak'));
    // A failed start is reported where it is awaited, not as an unhandled rejection while Docker still starts.
    void keycloakStarting.catch(() => undefined);
    stops.push(() =>
      keycloakStarting.then(
        (keycloak) => keycloak.stop(),
        () => undefined,
      ),
    );
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
    const keycloak = await keycloakStarting;
    const issuer = keycloak.issuer();
    printLine(`OpenID provider: ${issuer} (ready in ${(keycloak.readyInMs / 1000).toFixed(1)} s)`);
    const policyFile = await writePolicy(join(workDir, 'policy.yaml'), demoPolicy(workDir, production, issuer));
    printLine(`Platform policy (the worker's, not the requester's): ${policyFile}`);

    // Payloads are encrypted: the demo's worker and its own client share a key ring made for this run.
    if (!process.env.DEPLOY_AGENT_KEYS_FILE && !process.env.DEPLOY_AGENT_KEYS) {
      process.env.DEPLOY_AGENT_KEYS_FILE = join(workDir, 'keys.json');
      writeNewKeyRing(process.env.DEPLOY_AGENT_KEYS_FILE);
      printLine(`Payload keys (this run only): ${process.env.DEPLOY_AGENT_KEYS_FILE}`);
    }

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
    // This process plays the CI job: its requests carry the pipeline's client-credentials token. A raw token of the
    // person running the demo would come first in credentialFor and deploy in their name instead.
    delete process.env.DEPLOY_AGENT_TOKEN;
    delete process.env.DEPLOY_AGENT_TOKEN_FILE;
    Object.assign(process.env, clientCredentialsEnv(issuer));
    for (const [index, release] of RELEASES.entries()) {
      const approver = index % 2 === 0 ? 'alice' : 'bob';
      printLine(`\n== CI (${CI_PIPELINE.user}) deploys web-shop ${release.version} to production ==`);
      const spec = await loadSpecFile(await specFor(release));
      const handle = await startDeploy(client, spec, { env: 'production', version: release.version });
      const deploymentId = deploymentIdOf(handle.workflowId, handle.firstExecutionRunId);
      printLine(`deployment ${deploymentId}\n${workflowLink(handle.workflowId, handle.firstExecutionRunId)}`);
      const progress = follow(handle, { live: true });
      await waitUntilAwaitingApproval(handle);
      await showRefusedVotes(handle, issuer);
      const token = await passwordGrantToken(issuer, approver);
      const record = await castVote(handle, {
        decision: 'approve',
        comment: `demo approval of ${release.version}`,
        credential: { kind: 'oidc', token },
        contentHash: await contentToApprove(handle),
      });
      const approvals = record.votes.filter((v) => v.decision === 'approve').length;
      printLine(`  ${approver}, signed in with a password: counted (${approvals} of ${record.required} approvals)`);
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

/**
 * What gets refused at the gate, next to the real approval: a forged token, CI approving its own deploy, and a
 * Signal, which carries no token at all. Any of them counted would be a hole: the demo stops there.
 */
async function showRefusedVotes(handle: WorkflowHandle, issuer: string): Promise<void> {
  // Sent first: the updates after it are handled after it, so the status read below already holds its refusal.
  await handle.signal(voteSignal, { approver: 'alice', decision: 'approve' });
  const attempts: [string, () => Promise<Credential>][] = [
    [
      "a token with bob's claims, signed by a key the provider never had",
      async () => ({ kind: 'oidc', token: await forgedToken(await passwordGrantToken(issuer, 'bob')) }),
    ],
    ['CI approving its own deploy', () => credentialFor('vote')],
  ];
  for (const [what, credential] of attempts)
    printLine(`  ${what}: refused (${await refusalOf(handle, await credential(), what)})`);
  const status = await fetchStatus(handle);
  const signal = status.approval?.refused.find((r) => r.via === 'signal');
  if (!signal) throw new Error('the Signal vote claiming to be alice was not refused');
  printLine(`  a Signal claiming to be alice: refused (${signal.reason})`);
}

/** The worker's reason for refusing a vote. */
async function refusalOf(handle: WorkflowHandle, credential: Credential, what: string): Promise<string> {
  try {
    await castVote(handle, {
      decision: 'approve',
      credential,
      contentHash: (await fetchStatus(handle)).plan?.contentHash,
    });
  } catch (error) {
    if (!(error instanceof InvalidInput)) throw error;
    // The CLI's prefix and the workflow's own: the reason is what follows them.
    return error.message.replace(/^(vote refused: )+/, '');
  }
  throw new Error(`${what}: the vote was counted`);
}

/** The same header and claims as a real token, signed by a fresh key: what someone who copied a token can make. */
async function forgedToken(realToken: string): Promise<string> {
  const header = decodeProtectedHeader(realToken);
  const alg = header.alg ?? 'RS256';
  const { privateKey } = await generateKeyPair(alg);
  return new SignJWT(decodeJwt(realToken)).setProtectedHeader({ ...header, alg }).sign(privateKey);
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
