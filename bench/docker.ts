/**
 * Deploy and rollback on the Docker target: `deploy-agent deploy --wait` and `deploy-agent rollback --wait`, the real
 * CLI process as CI runs it, against a docker-CLI script doing the same replace and health wait on the same engine.
 */
import { fileURLToPath } from 'node:url';
import { freePort } from '../stack/processes.js';
import { type BenchDockerStack, startBenchDockerStack } from './docker-stack.js';
import { AgentRuns, deployAndRollbackRows, type RawSide, runCommand } from './docker-timing.js';
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
    return await deployAndRollbackRows({
      target: 'Docker',
      agent: new AgentRuns(stack.cliEnv, await stack.specFile(SERVICE), SERVICE),
      raw: new RawRuns(stack, rawPort),
      cliEnv: stack.cliEnv,
      runs: options.runs,
      notes: {
        deploy: 'agent: deploy --wait (CLI process); raw: pull, stop, rm, run, health poll',
        rollback: 'agent: rollback --wait restores the kept container; raw: the script to the previous version',
      },
    });
  } finally {
    await stack.stop();
  }
};

class RawRuns implements RawSide {
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

  /** The same script, back to the previous version. */
  rollback(previous: string): Promise<number> {
    return this.deploy(previous);
  }
}
