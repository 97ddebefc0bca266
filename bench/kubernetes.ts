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
import { AgentRuns, deployAndRollbackRows, runCommand } from './docker-timing.js';
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
      return await deployAndRollbackRows({
        target: 'Kubernetes',
        agent,
        raw: { deploy: rawDeploy, rollback: rawRollback },
        cliEnv: stack.cliEnv,
        runs: options.runs,
        notes: {
          deploy: 'agent: deploy --wait (CLI process); raw: kubectl apply + kubectl rollout status',
          rollback: 'agent: rollback --wait; raw: kubectl rollout undo + kubectl rollout status',
        },
      });
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
