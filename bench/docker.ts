/**
 * Deploy and rollback on the Docker target: `deploy-agent deploy --wait` and `deploy-agent rollback --wait`, the real
 * CLI process as CI runs it, against a docker-CLI script doing the same replace and health wait on the same engine.
 */
import { fileURLToPath } from 'node:url';
import { freePort } from '../stack/processes.js';
import { BENCH_VERSIONS, type BenchDockerStack, startBenchDockerStack } from './docker-stack.js';
import { AgentRuns, comparison, runCommand, type TimedCli, whereTheTimeGoes } from './docker-timing.js';
import { type BenchSuite, timed } from './measure.js';

const RAW_DEPLOY = fileURLToPath(new URL('../../bench/docker-raw-deploy.sh', import.meta.url));
const SERVICE = 'bench-web';
const RAW_CONTAINER = 'bench-web-raw';
// What the agent uses (activities/docker/driver.ts) when the spec sets no container.stopGracePeriod, and what the
// spec fixture's health check says: the raw script gets the same.
const STOP_GRACE_SECONDS = 10;
const CONTAINER_PORT = 8080;
const HEALTH_PATH = '/health';
const HEALTH_POLL_SECONDS = 0.2;
const HEALTHY_WITHIN_SECONDS = 8;

export const dockerSuite: BenchSuite = async (options) => {
  const stack = await startBenchDockerStack(options.workDir, { services: [SERVICE] });
  try {
    // A host port of its own: the raw container runs beside the agent's, on the same engine.
    const rawPort = await freePort();
    const agent = new AgentRuns(stack.cliEnv, await stack.specFile(SERVICE), SERVICE);
    const raw = new RawRuns(stack, rawPort);
    const versions = (i: number) => BENCH_VERSIONS[i % 2]!;

    // Each side starts from a running release, so that every timed deploy replaces one.
    await agent.deploy(versions(0));
    await raw.deploy(versions(0));
    const agentDeploys: number[] = [];
    const rawDeploys: number[] = [];
    let lastDeploy: TimedCli | undefined;
    for (let i = 1; i <= options.runs; i++) {
      lastDeploy = await agent.deploy(versions(i));
      agentDeploys.push(lastDeploy.ms);
      rawDeploys.push(await raw.deploy(versions(i)));
    }

    // A rollback undoes the deploy before it: each run first deploys the other version (not timed), then goes back.
    const live = versions(options.runs);
    const other = versions(options.runs + 1);
    const agentRollbacks: number[] = [];
    const rawRollbacks: number[] = [];
    for (let i = 0; i < options.runs; i++) {
      await agent.deploy(other);
      agentRollbacks.push((await agent.rollback()).ms);
      await raw.deploy(other);
      rawRollbacks.push(await raw.deploy(live));
    }

    const breakdown = lastDeploy
      ? await whereTheTimeGoes('one deploy (Docker), taken apart', stack.cliEnv, lastDeploy)
      : undefined;
    return [
      comparison(
        'deploy (Docker)',
        agentDeploys,
        rawDeploys,
        1.3,
        'agent: deploy --wait (CLI process); raw: pull, stop, rm, run, health poll',
      ),
      comparison(
        'rollback (Docker)',
        agentRollbacks,
        rawRollbacks,
        1.5,
        'agent: rollback --wait restores the kept container; raw: the script to the previous version',
      ),
      ...(breakdown ? [breakdown] : []),
    ];
  } finally {
    await stack.stop();
  }
};

class RawRuns {
  constructor(
    private readonly stack: BenchDockerStack,
    private readonly port: number,
  ) {}

  /** The script as a whole process, from spawn to exit. */
  async deploy(version: string): Promise<number> {
    const image = `${this.stack.repository}:${version}`;
    const args = [
      RAW_DEPLOY,
      image,
      RAW_CONTAINER,
      String(this.port),
      String(CONTAINER_PORT),
      HEALTH_PATH,
      String(STOP_GRACE_SECONDS),
      String(HEALTH_POLL_SECONDS),
      String(HEALTHY_WITHIN_SECONDS),
    ];
    const { ms } = await timed(() => runCommand('bash', args, { DOCKER_HOST: this.stack.docker.engine.dockerHost }));
    return ms;
  }
}
