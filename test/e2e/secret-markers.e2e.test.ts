/**
 * Secrets never leave where they live. Every scenario runs with marker secrets (unique random values): Docker
 * releases using secrets by reference (a file and a variable of the worker's), a failing release compensated, a
 * manual rollback, a Kubernetes release holding a Secret (data and stringData) deployed and rolled back, and a
 * manifest with a YAML syntax error on the line holding a marker. Then every marker is searched for in the raw
 * histories (payloads decoded), `status --json`, the reports, the worker's logs, the CLI's output and the audit; it
 * must be nowhere, while the container really holds the values, which proves the references were resolved.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import * as k8s from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import type { DeploymentStatus } from '../../domain/deployment.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { startKubeControlPlane, workerKubeconfig } from '../../stack/kube.js';
import { freePort } from '../../stack/processes.js';
import { type CliResult, runCli } from '../support/cli.js';
import { testKeysEnv } from '../support/keys.js';
import { testDataConverter } from '../support/temporal.js';
import { fileHaystacks, findMarkers, type Haystack, historyHaystacks, newMarker } from '../support/markers.js';
import {
  dockerEnvironment,
  specYaml,
  startTestTemporal,
  testPolicy,
  writeTestFiles,
} from '../support/spec-fixtures.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/kubernetes/', import.meta.url));
const WORKER = fileURLToPath(new URL('../../worker/main.js', import.meta.url));
const NAMESPACE = 'shop';

const markers = {
  dbPassword: newMarker('db-password'),
  dbPasswordRotated: newMarker('db-password-rotated'),
  apiToken: newMarker('api-token'),
  kubeData: newMarker('kube-data'),
  kubeStringData: newMarker('kube-string-data'),
  kubeDataV2: newMarker('kube-data-v2'),
  kubeStringDataV2: newMarker('kube-string-data-v2'),
  brokenManifest: newMarker('broken-manifest'),
};

describe('secret markers appear nowhere', { timeout: 900_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>>;
  let plane: Awaited<ReturnType<typeof startKubeControlPlane>>;
  let temporal: DevStack;
  let engine: Docker;
  let core: k8s.CoreV1Api;
  let worker: ChildProcess;
  let env: Record<string, string>;
  let specFile: string;
  let secretFile: string;
  const workerLog = { stdout: '', stderr: '' };
  /** Everything the CLI printed, every call. */
  const cliOutput: Haystack[] = [];
  const deploymentIds = new Set<string>();

  async function cli(args: string[]): Promise<CliResult> {
    const result = await runCli(args, env);
    cliOutput.push({ where: `deploy-agent ${args.join(' ')} (stdout)`, text: result.stdout });
    cliOutput.push({ where: `deploy-agent ${args.join(' ')} (stderr)`, text: result.stderr });
    for (const id of `${result.stdout}\n${result.stderr}`.match(/web-shop\.[a-z-]+\.[0-9a-f-]{36}/g) ?? [])
      deploymentIds.add(id);
    return result;
  }

  const statusOf = (result: CliResult): DeploymentStatus => JSON.parse(result.stdout) as DeploymentStatus;
  const liveEnv = async (name: string) => (await engine.getContainer(name).inspect()).Config.Env ?? [];

  /** A Kubernetes release: the web-shop fixture plus a Secret holding markers in data and stringData. */
  async function kubeRelease(name: string, secret: { data: string; stringData: string }, extra = ''): Promise<string> {
    const dir = join(workDir, `release-${name}`);
    await cp(join(FIXTURES, 'web-shop'), dir, { recursive: true });
    for (const file of ['app.yaml', 'config.yaml']) {
      const text = await readFile(join(dir, file), 'utf8');
      await writeFile(join(dir, file), text.replaceAll('127.0.0.1:5000', docker.registry.address));
    }
    await writeFile(
      join(dir, 'db-secret.yaml'),
      `apiVersion: v1
kind: Secret
metadata:
  name: web-shop-db
type: Opaque
data:
  password: ${Buffer.from(secret.data).toString('base64')}
stringData:
  token: ${secret.stringData}
${extra}`,
    );
    const spec = join(workDir, `deploy-${name}.yaml`);
    await writeFile(
      spec,
      `service: web-shop
target: kubernetes
image:
  repository: ${docker.registry.address}/web-shop
release:
  manifests: ${dir}
healthCheck:
  healthyWithin: 60s
`,
    );
    return spec;
  }

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'secret-markers-e2e-'));
    docker = await startLocalDockerStack(join(workDir, 'docker'));
    engine = new Docker({ socketPath: docker.engine.socketPath });
    const repository = `${docker.registry.address}/web-shop`;
    for (const [version, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['2.0.0', false],
    ] as const)
      await buildServiceImage(docker, { repository, version, healthy });

    plane = await startKubeControlPlane(join(workDir, 'kube'));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(plane.kubeconfigPath);
    core = kc.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NAMESPACE } } });
    const kube = await workerKubeconfig(plane, { namespaces: [NAMESPACE], file: join(workDir, 'worker.kubeconfig') });

    await mkdir(join(workDir, 'secrets'), { mode: 0o700 });
    secretFile = join(workDir, 'secrets', 'db-password');
    await writeFile(secretFile, `${markers.dbPassword}\n`, { mode: 0o600 });
    const policy = testPolicy([workDir], {
      staging: dockerEnvironment(
        docker.engine.dockerHost,
        { 'web-shop': await freePort() },
        {
          secrets: {
            // Relative to the policy file.
            'db-password': { file: 'secrets/db-password' },
            'api-token': { env: 'WEB_SHOP_API_TOKEN', services: ['web-shop'] },
            'billing-key': { env: 'BILLING_KEY', services: ['billing'] },
            'never-written': { file: 'secrets/never-written' },
          },
        },
      ),
      kube: { kubernetes: { kubeconfig: kube.kubeconfigPath, namespace: NAMESPACE } },
    });
    const container = `container:
  secrets:
    DB_PASSWORD: db-password
    API_TOKEN: api-token
`;
    let policyFile: string;
    ({ specFile, policyFile } = await writeTestFiles(workDir, { spec: specYaml({ repository }, container), policy }));
    ({ temporal, env } = await startTestTemporal(workDir, policyFile, { worker: false }));
    // The worker as its own process, so that its logs are what a platform team would collect.
    worker = spawn(process.execPath, [WORKER], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        TEMPORAL_ADDRESS: temporal.address,
        DEPLOY_AGENT_POLICY: policyFile,
        DEPLOY_AGENT_REPORTS_DIR: join(workDir, 'reports'),
        WEB_SHOP_API_TOKEN: markers.apiToken,
        ...testKeysEnv(),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout?.on('data', (chunk: Buffer) => (workerLog.stdout += chunk.toString()));
    worker.stderr?.on('data', (chunk: Buffer) => (workerLog.stderr += chunk.toString()));
  });

  after(async () => {
    if (worker && worker.exitCode === null && worker.signalCode === null) {
      const exited = once(worker, 'exit');
      worker.kill('SIGTERM');
      await exited;
    }
    await temporal?.stop();
    await plane?.stop();
    await docker?.stop();
    await rm(workDir, { recursive: true, force: true });
  });

  it('Docker: deploys with a secret from a file and one from a worker variable; the container holds both', async () => {
    const result = await cli(['deploy', '-f', specFile, '--env', 'staging', '--version', '1.0.0', '--wait', '--json']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const live = await liveEnv('web-shop_staging');
    assert.ok(live.includes(`DB_PASSWORD=${markers.dbPassword}`), 'the file reference was resolved');
    assert.ok(live.includes(`API_TOKEN=${markers.apiToken}`), 'the variable reference was resolved');
    assert.match(statusOf(result).applied?.configHash ?? '', /^hmac-sha256:test:[a-f0-9]{64}$/);
  });

  it('Docker: a rotated secret value changes the configuration; the diff names the variable only', async () => {
    const before = await engine.getContainer('web-shop_staging').inspect();
    await writeFile(secretFile, markers.dbPasswordRotated);
    const result = await cli(['deploy', '-f', specFile, '--env', 'staging', '--version', '1.1.0', '--wait', '--json']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const status = statusOf(result);
    assert.deepEqual(
      status.objectChanges?.changed.flatMap((c) => c.fields).filter((f) => f.startsWith('env.')),
      ['env.DB_PASSWORD'],
    );
    assert.ok((await liveEnv('web-shop_staging')).includes(`DB_PASSWORD=${markers.dbPasswordRotated}`));
    assert.notEqual((await engine.getContainer('web-shop_staging').inspect()).Id, before.Id);
  });

  it('Docker: a failing release is compensated back to the container holding the rotated secret (exit 1)', async () => {
    const result = await cli(['deploy', '-f', specFile, '--env', 'staging', '--version', '2.0.0', '--wait', '--json']);
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const status = statusOf(result);
    assert.equal(status.state, 'rolled-back');
    assert.equal(status.rollback?.consistency?.consistent, true, JSON.stringify(status.rollback));
    assert.ok((await liveEnv('web-shop_staging')).includes(`DB_PASSWORD=${markers.dbPasswordRotated}`));
  });

  it('Docker: a manual rollback brings back the release with the first secret value (exit 0)', async () => {
    const result = await cli(['rollback', '-f', specFile, '--env', 'staging', '--wait', '--json']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const live = await liveEnv('web-shop_staging');
    assert.ok(live.includes(`DB_PASSWORD=${markers.dbPassword}`), 'the rollback point kept its own value');
    assert.ok(live.includes(`API_TOKEN=${markers.apiToken}`));
  });

  it('Docker: a secret the policy does not give the service, or the worker cannot find, is invalid (exit 2)', async () => {
    const before = await engine.getContainer('web-shop_staging').inspect();
    const repository = `${docker.registry.address}/web-shop`;
    const refused = join(workDir, 'deploy-refused.yaml');
    await writeFile(
      refused,
      specYaml({ repository }, 'container:\n  secrets:\n    BILLING: billing-key\n    X: nope\n'),
    );
    const denied = await cli(['deploy', '-f', refused, '--env', 'staging', '--version', '1.0.0', '--wait']);
    assert.equal(denied.code, 2, denied.stdout + denied.stderr);
    const denial = denied.stdout + denied.stderr;
    assert.match(denial, /container\.secrets\.BILLING: secret billing-key is not allowed for service web-shop/);
    assert.match(denial, /container\.secrets\.X: secret nope is not defined for environment staging/);

    const missing = join(workDir, 'deploy-missing.yaml');
    await writeFile(missing, specYaml({ repository }, 'container:\n  secrets:\n    GONE: never-written\n'));
    const absent = await cli(['deploy', '-f', missing, '--env', 'staging', '--version', '1.0.0', '--wait']);
    assert.equal(absent.code, 2, absent.stdout + absent.stderr);
    assert.match(
      absent.stdout + absent.stderr,
      /secret never-written \(container\.secrets\.GONE\), looked for in file \S+never-written on the worker: cannot be read \(ENOENT\)/,
    );
    const after = await engine.getContainer('web-shop_staging').inspect();
    assert.equal(after.Id, before.Id, 'nothing changed');
  });

  it('Kubernetes: a release holding a Secret is deployed, replaced and rolled back', async () => {
    const v1 = await kubeRelease('v1', { data: markers.kubeData, stringData: markers.kubeStringData });
    const v2 = await kubeRelease('v2', { data: markers.kubeDataV2, stringData: markers.kubeStringDataV2 });
    for (const [spec, version] of [
      [v1, '1.0.0'],
      [v2, '1.1.0'],
    ] as const) {
      const result = await cli(['deploy', '-f', spec, '--env', 'kube', '--version', version, '--wait', '--json']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
    }
    const rollback = await cli(['rollback', '-f', v2, '--env', 'kube', '--wait', '--json']);
    assert.equal(rollback.code, 0, rollback.stdout + rollback.stderr);
    const secret = await core.readNamespacedSecret({ name: 'web-shop-db', namespace: NAMESPACE });
    assert.equal(Buffer.from(secret.data?.password ?? '', 'base64').toString(), markers.kubeData);
    assert.equal(Buffer.from(secret.data?.token ?? '', 'base64').toString(), markers.kubeStringData);
  });

  it('Kubernetes: a YAML syntax error on the line holding a marker names the file and line, not the line', async () => {
    const broken = await kubeRelease(
      'broken',
      { data: 'unused', stringData: 'unused' },
      `  other: ${markers.brokenManifest}: [unclosed\n`,
    );
    const validate = await cli(['validate', '-f', broken]);
    assert.equal(validate.code, 2, validate.stdout + validate.stderr);
    assert.match(validate.stderr, /db-secret\.yaml document 1: line 10, column \d+: YAML syntax error \([A-Z_]+\)/);
    const deploy = await cli(['deploy', '-f', broken, '--env', 'kube', '--version', '1.0.0', '--wait', '--json']);
    assert.equal(deploy.code, 2, deploy.stdout + deploy.stderr);
    assert.match(deploy.stdout, /db-secret\.yaml document 1: line 10, column \d+: YAML syntax error/);
  });

  it('no marker in the histories, status, reports, audit, worker logs or CLI output', async () => {
    const all = Object.values(markers);
    const haystacks: Haystack[] = [];
    const connection = await Connection.connect({ address: temporal.address });
    try {
      // Stored payloads are ciphertext: each is searched as stored and decrypted with the worker's keys.
      haystacks.push(...(await historyHaystacks(new Client({ connection }), { dataConverter: testDataConverter() })));
    } finally {
      await connection.close();
    }
    assert.ok(haystacks.length >= 9, `every workflow's history was read (${haystacks.length})`);
    // Payload contents are searched: the references the requests carried are found there.
    assert.ok(
      haystacks.some((h) => h.text.includes('"DB_PASSWORD":"db-password"')),
      'payloads were read',
    );
    for (const id of deploymentIds) {
      const status = await cli(['status', id, '--json']);
      assert.ok(status.stdout.length > 0, status.stderr);
    }
    for (const args of [['audit', '--json'], ['audit'], ['list', '--json']]) await cli(args);
    haystacks.push(...(await fileHaystacks(join(workDir, 'reports'))));
    assert.ok(
      haystacks.some((h) => h.where.includes('reports')),
      'reports were written',
    );
    haystacks.push(
      { where: 'worker stdout', text: workerLog.stdout },
      { where: 'worker stderr', text: workerLog.stderr },
    );
    haystacks.push(...cliOutput);

    // The search can find: the live container and the cluster do hold the values.
    const container = JSON.stringify(await engine.getContainer('web-shop_staging').inspect());
    const secret = JSON.stringify(await core.readNamespacedSecret({ name: 'web-shop-db', namespace: NAMESPACE }));
    assert.deepEqual(
      findMarkers([markers.dbPassword, markers.kubeData], [{ where: 'live', text: container + secret }]),
      [`${markers.dbPassword} in live`, `${markers.kubeData} in live`],
    );

    assert.deepEqual(findMarkers(all, haystacks), []);
  });
});
