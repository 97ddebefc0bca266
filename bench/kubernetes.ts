/**
 * Deploy and rollback on the Kubernetes target (a real API server with kwok nodes): `deploy-agent deploy --wait` and
 * `deploy-agent rollback --wait`, the real CLI process, against `kubectl apply` + `kubectl rollout status` and
 * `kubectl rollout undo` + `kubectl rollout status` on the same control plane, each side in a namespace of its own.
 */
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kubectlPath, startKubeControlPlane, workerKubeconfig } from '../stack/kube.js';
import { BENCH_VERSIONS, startBenchDockerStack } from './docker-stack.js';
import { AgentRuns, comparison, runCommand, type TimedCli, whereTheTimeGoes } from './docker-timing.js';
import { type BenchSuite, timed } from './measure.js';

/** A Service, a Deployment of two replicas, a ConfigMap and a Secret: the end-to-end tests' release. */
const RELEASE = fileURLToPath(new URL('../../test/fixtures/kubernetes/web-shop/', import.meta.url));
const FIXTURE_REPOSITORY = '127.0.0.1:5000/web-shop';
const SERVICE = 'web-shop';
const AGENT_NAMESPACE = 'bench-agent';
const RAW_NAMESPACE = 'bench-raw';
const ROLLOUT_TIMEOUT = '120s';

export const kubernetesSuite: BenchSuite = async (options) => {
  const kubectl = kubectlPath();
  const plane = await startKubeControlPlane(join(options.workDir, 'kube'));
  try {
    const worker = await workerKubeconfig(plane, {
      namespaces: [AGENT_NAMESPACE],
      file: join(options.workDir, 'worker.kubeconfig'),
    });
    const stack = await startBenchDockerStack(options.workDir, {
      services: [],
      environment: { kubernetes: { kubeconfig: worker.kubeconfigPath, namespace: AGENT_NAMESPACE } },
    });
    try {
      const admin = { KUBECONFIG: plane.kubeconfigPath };
      const run = (...args: string[]) => runCommand(kubectl, args, admin);
      await run('create', 'namespace', RAW_NAMESPACE);

      // The agent pins the release's image by digest; kubectl applies the manifests with the version's tag.
      const agentSpec = await writeAgentSpec(options.workDir, stack.repository);
      const rawManifests = Object.fromEntries(
        await Promise.all(
          BENCH_VERSIONS.map(
            async (v) => [v, await copyRelease(join(options.workDir, `raw-${v}`), `${stack.repository}:${v}`)] as const,
          ),
        ),
      );
      const agent = new AgentRuns(stack.cliEnv, agentSpec, SERVICE);
      const rollout = () =>
        run('rollout', 'status', `deployment/${SERVICE}`, '-n', RAW_NAMESPACE, `--timeout=${ROLLOUT_TIMEOUT}`);
      const rawDeploy = async (version: string) =>
        (
          await timed(async () => {
            await run('apply', '-n', RAW_NAMESPACE, '-f', rawManifests[version]!);
            await rollout();
          })
        ).ms;
      const rawRollback = async () =>
        (
          await timed(async () => {
            await run('rollout', 'undo', `deployment/${SERVICE}`, '-n', RAW_NAMESPACE);
            await rollout();
          })
        ).ms;
      const versions = (i: number) => BENCH_VERSIONS[i % 2]!;

      // Each side starts from a rolled-out release, so that every timed deploy replaces one.
      await agent.deploy(versions(0));
      await rawDeploy(versions(0));
      const agentDeploys: number[] = [];
      const rawDeploys: number[] = [];
      let lastDeploy: TimedCli | undefined;
      for (let i = 1; i <= options.runs; i++) {
        lastDeploy = await agent.deploy(versions(i));
        agentDeploys.push(lastDeploy.ms);
        rawDeploys.push(await rawDeploy(versions(i)));
      }

      // A rollback undoes the deploy before it: each run first deploys the other version (not timed).
      const other = versions(options.runs + 1);
      const agentRollbacks: number[] = [];
      const rawRollbacks: number[] = [];
      for (let i = 0; i < options.runs; i++) {
        await agent.deploy(other);
        agentRollbacks.push((await agent.rollback()).ms);
        await rawDeploy(other);
        rawRollbacks.push(await rawRollback());
      }

      const breakdown = lastDeploy
        ? await whereTheTimeGoes('one deploy (Kubernetes), taken apart', stack.cliEnv, lastDeploy)
        : undefined;
      return [
        comparison(
          'deploy (Kubernetes)',
          agentDeploys,
          rawDeploys,
          1.3,
          'agent: deploy --wait (CLI process); raw: kubectl apply + kubectl rollout status',
        ),
        comparison(
          'rollback (Kubernetes)',
          agentRollbacks,
          rawRollbacks,
          1.5,
          'agent: rollback --wait; raw: kubectl rollout undo + kubectl rollout status',
        ),
        ...(breakdown ? [breakdown] : []),
      ];
    } finally {
      await stack.stop();
    }
  } finally {
    await plane.stop();
  }
};

/** The release's manifests in `dir`, their image set to `image`; answers the directory. */
async function copyRelease(dir: string, image: string): Promise<string> {
  await cp(RELEASE, dir, { recursive: true });
  for (const file of await readdir(dir)) {
    const text = await readFile(join(dir, file), 'utf8');
    await writeFile(join(dir, file), text.replaceAll(`${FIXTURE_REPOSITORY}:latest`, image));
  }
  return dir;
}

async function writeAgentSpec(workDir: string, repository: string): Promise<string> {
  const manifests = await copyRelease(join(workDir, 'release'), `${repository}:latest`);
  const spec = join(workDir, 'deploy.yaml');
  await writeFile(
    spec,
    `service: ${SERVICE}
target: kubernetes
image:
  repository: ${repository}
release:
  manifests: ${manifests}
healthCheck:
  healthyWithin: 60s
`,
  );
  return spec;
}
