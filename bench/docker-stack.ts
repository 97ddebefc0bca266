/**
 * The stack the Docker and concurrency suites measure on: a local Docker engine and registry with the example service
 * built at two healthy versions, the Temporal dev server, and the worker as a process of its own (as a container runs
 * it), judging by a policy in insecure dev mode whose one environment publishes each service on its own host port
 * (or is the one a suite gives: the Kubernetes suite's cluster, whose images the same registry holds).
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServiceImage, type LocalDockerStack, startLocalDockerStack } from '../stack/docker.js';
import type { DevStack } from '../stack/dev.js';
import { freePort, type ManagedProcess, startAndWait } from '../stack/processes.js';
import {
  dockerEnvironment,
  type PolicyDocument,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../test/support/spec-fixtures.js';

const WORKER = fileURLToPath(new URL('../worker/main.js', import.meta.url));
const WORKER_START_MS = 60_000;

/** The one environment every bench service deploys to. */
export const BENCH_ENVIRONMENT = 'bench';
/** The versions built, both healthy: deploys alternate between them. */
export const BENCH_VERSIONS = ['1.0.0', '1.1.0'] as const;

export interface BenchDockerStack {
  docker: LocalDockerStack;
  /** <registry>/bench-web: every service runs this image. */
  repository: string;
  /** What the CLI needs to reach Temporal, as ci-bot, with the worker's payload keys. */
  cliEnv: Record<string, string>;
  /** The host port each service is published on. */
  ports: Record<string, number>;
  /** The worker process: its pid is where its memory and CPU are read. */
  worker: ManagedProcess;
  /** A deploy.yaml for the service, written once. */
  specFile(service: string): Promise<string>;
  stop(): Promise<void>;
}

export interface BenchDockerStackOptions {
  /** Services published on the engine, each on a host port of its own. */
  services: string[];
  /** The bench environment of the policy instead of the engine with those ports (a Kubernetes cluster, say). */
  environment?: PolicyDocument;
  /** How long a release has to become healthy: generous when many start at once on a small machine. */
  healthyWithin?: string;
}

export async function startBenchDockerStack(
  workDir: string,
  options: BenchDockerStackOptions,
): Promise<BenchDockerStack> {
  await mkdir(workDir, { recursive: true });
  // Stopped newest first: the worker before Temporal, both before the engine its containers run on.
  const stoppers: (() => Promise<void>)[] = [];
  const stop = async () => {
    const problems: string[] = [];
    for (const stopOne of stoppers.splice(0).reverse())
      await stopOne().catch((error: unknown) => problems.push(String(error)));
    if (problems.length > 0) throw new Error(`bench: stopping the stack: ${problems.join('; ')}`);
  };
  try {
    const docker = await startLocalDockerStack(join(workDir, 'docker'));
    stoppers.push(() => docker.stop());
    const repository = `${docker.registry.address}/bench-web`;
    for (const version of BENCH_VERSIONS) await buildServiceImage(docker, { repository, version, healthy: true });

    const ports: Record<string, number> = {};
    for (const service of options.services) ports[service] = await freePort();
    const policy = testPolicy([workDir], {
      [BENCH_ENVIRONMENT]: options.environment ?? dockerEnvironment(docker.engine.dockerHost, ports),
    });
    const { policyFile } = await writeTestFiles(workDir, { policy });
    const { temporal, env } = await startTestTemporal(workDir, policyFile, { worker: false });
    stoppers.push(() => temporal.stop());
    const worker = await startWorkerProcess(workDir, policyFile, temporal, env);
    stoppers.push(() => worker.stop({ graceMs: 10_000 }));

    const specs = new Map<string, string>();
    return {
      docker,
      repository,
      cliEnv: env,
      ports,
      worker,
      async specFile(service) {
        const known = specs.get(service);
        if (known) return known;
        const dir = join(workDir, 'services', service);
        await mkdir(dir, { recursive: true });
        const file = join(dir, 'deploy.yaml');
        await writeFile(file, specYaml({ service, repository, healthyWithin: options.healthyWithin }));
        specs.set(service, file);
        return file;
      },
      stop,
    };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/** `node dist/worker/main.js` with only the environment a container would give it; ready once it polls. */
async function startWorkerProcess(
  workDir: string,
  policyFile: string,
  temporal: DevStack,
  cliEnv: Record<string, string>,
): Promise<ManagedProcess> {
  const configHome = join(workDir, 'worker-config');
  await mkdir(configHome, { recursive: true });
  const logFile = join(workDir, 'worker.log');
  return startAndWait({
    name: 'worker',
    command: process.execPath,
    args: [WORKER],
    logFile,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      XDG_CONFIG_HOME: configHome,
      TEMPORAL_ADDRESS: temporal.address,
      DEPLOY_AGENT_KEYS: cliEnv.DEPLOY_AGENT_KEYS ?? '',
      DEPLOY_AGENT_POLICY: policyFile,
      DEPLOY_AGENT_REPORTS_DIR: join(workDir, 'reports'),
    },
    ready: { probe: () => Promise.resolve(logSays(logFile, 'worker polling')), timeoutMs: WORKER_START_MS },
    stop: { graceMs: 10_000 },
  });
}

function logSays(file: string, text: string): boolean {
  try {
    return readFileSync(file, 'utf8').includes(text);
  } catch {
    return false;
  }
}
