/**
 * Valid service specs (deploy.yaml) and platform policies for tests; each test changes only what it is about. The
 * spec says what the service is, the policy where it may go and who decides: they are written separately, as a
 * requester and the platform team write them.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { DevStack } from '../../stack/dev.js';
import { writePolicy } from '../../stack/policy.js';

export interface SpecFixture {
  service?: string;
  repository: string;
  sourceRepository?: string;
  /** How long a release has to become healthy; 8s by default. */
  healthyWithin?: string;
}

/**
 * A Docker service spec, health checked fast enough for tests, inside limits. `extra` is more YAML; a `container:`
 * block at its start is merged into the spec's own.
 */
export function specYaml(o: SpecFixture, extra = ''): string {
  const [, containerLines = '', rest = extra] = /^container:\n((?: {2}.*\n)*)([^]*)$/.exec(extra) ?? [];
  return `service: ${o.service ?? 'web-shop'}
target: docker
image:
  repository: ${o.repository}
container:
  resources: { memory: 64m, cpus: 0.5 }
${containerLines}healthCheck:
  path: /health
  interval: 200ms
  timeout: 1s
  healthyWithin: ${o.healthyWithin ?? '8s'}
${o.sourceRepository ? `source:\n  repository: ${o.sourceRepository}\n` : ''}${rest}`;
}

export type PolicyDocument = Record<string, unknown>;

/**
 * A policy whose identities are bare names (DEPLOY_AGENT_USER), unproven: what every test but the identity tests
 * runs with. `sourceRoots` must hold the directories of the tests' manifests and source repositories.
 */
export function testPolicy(sourceRoots: string[], environments: Record<string, PolicyDocument>): PolicyDocument {
  return { identity: { insecureDevMode: true }, sourceRoots, environments };
}

/** A Docker environment of a policy: the engine, and the host port each service is published on there. */
export function dockerEnvironment(
  host: string,
  ports: Record<string, number>,
  more: PolicyDocument = {},
): PolicyDocument {
  return { docker: { host, ports }, ...more };
}

export interface PolicyFixture {
  sourceRoots: string[];
  dockerHost: string;
  /** The service's host port in staging and in production. */
  ports: { staging: number; production: number };
  service?: string;
  /** Further environments a test needs. */
  more?: Record<string, PolicyDocument>;
}

/** Staging open to everyone; production protected: ci-bot deploys, alice or bob approve, rollbacks need one too. */
export function policyObject(o: PolicyFixture): PolicyDocument {
  const service = o.service ?? 'web-shop';
  return testPolicy(o.sourceRoots, {
    staging: dockerEnvironment(o.dockerHost, { [service]: o.ports.staging }),
    production: dockerEnvironment(
      o.dockerHost,
      { [service]: o.ports.production },
      {
        protected: true,
        deployers: ['ci-bot'],
        approval: { required: 1, approvers: ['alice', 'bob'], deadline: '24h' },
        rollbackRequiresApproval: true,
      },
    ),
    ...o.more,
  });
}

export function policyYaml(o: PolicyFixture): string {
  return stringify(policyObject(o));
}

export interface TestFiles {
  specFile: string;
  policyFile: string;
}

/** Writes a test's deploy.yaml and its policy (checked first: a test never starts a worker that refuses it). */
export async function writeTestFiles(
  workDir: string,
  files: { spec?: string; policy: PolicyDocument },
): Promise<TestFiles> {
  const specFile = join(workDir, 'deploy.yaml');
  if (files.spec !== undefined) await writeFile(specFile, files.spec);
  const policyFile = await writePolicy(join(workDir, 'policy.yaml'), files.policy);
  return { specFile, policyFile };
}

export interface TestTemporal {
  temporal: DevStack;
  /** What the CLI needs to reach it, as ci-bot. */
  env: Record<string, string>;
}

/** The Temporal dev server and, unless `worker` is false, a worker judging by `policyFile`; reports go to workDir. */
export async function startTestTemporal(
  workDir: string,
  policyFile: string,
  options: { worker?: boolean } = {},
): Promise<TestTemporal> {
  // Loaded here: the unit tests that read the fixtures above need no Temporal.
  const [{ startDevStack }, { freePort }] = await Promise.all([
    import('../../stack/dev.js'),
    import('../../stack/processes.js'),
  ]);
  const [{ keyRingFromEnv }, { testKeysEnv }] = await Promise.all([
    import('../../keys/key-ring.js'),
    import('./keys.js'),
  ]);
  const keys = testKeysEnv();
  const temporal = await startDevStack({
    keyRing: keyRingFromEnv(),
    port: await freePort(),
    uiPort: await freePort(),
    reportsDir: join(workDir, 'reports'),
    policyFile,
    worker: options.worker,
  });
  return {
    temporal,
    env: { TEMPORAL_ADDRESS: temporal.address, TEMPORAL_UI_URL: temporal.uiUrl, DEPLOY_AGENT_USER: 'ci-bot', ...keys },
  };
}
