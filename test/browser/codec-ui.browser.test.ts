/**
 * Decoded payloads in a real browser: Debian's chromium (driven by playwright-core) signs in through Keycloak to the
 * standalone Temporal Web UI server, which passes the user's access token to the codec server over https. A real
 * deploy waits at its approval gate with a marker in the spec's plain `container.env`:
 * - a payload reader (erin, by her group) sees the decoded input, marker included;
 * - a signed-in user who is no payload reader (dave) sees the codec's refusal and the input still encrypted;
 * - the raw history, read without the codec, holds ciphertext only.
 * The test CA of the codec server is trusted through an NSS database, as a company CA would be; nothing skips
 * certificate checks. Screenshots go to test-artifacts/codec-ui/.
 *
 * The Temporal dev server behind the UI speaks plaintext gRPC on loopback: a fixture, not a security boundary.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it, type TestContext } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils.js';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { ENCRYPTED_ENCODING } from '../../codec/payload-codec.js';
import { parseDeploymentId } from '../../domain/deployment.js';
import { chromiumPath, homeTrusting } from '../../stack/browser.js';
import type { DevStack } from '../../stack/dev.js';
import { buildServiceImage, startLocalDockerStack } from '../../stack/docker.js';
import { createCertificateAuthority } from '../../stack/nginx.js';
import { freePort, type ManagedProcess, startAndWait } from '../../stack/processes.js';
import { startTemporalUi, type TemporalUi } from '../../stack/ui.js';
import { deploymentIdIn, runCli, waitForStatus } from '../support/cli.js';
import { encodingOf, payloadsIn } from '../support/history-payloads.js';
import { testKeysEnv } from '../support/keys.js';
import { AUDIENCE, useKeycloak } from '../support/oidc.js';
import { policyObject, specYaml, startTestTemporal, writeTestFiles } from '../support/spec-fixtures.js';

const CLI = fileURLToPath(new URL('../../client/cli.js', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/codec-ui/', import.meta.url));
const MARKER = 'ui-input-marker-3f7a21';
/** The realm's confidential client for the UI server (stack/keycloak/realm.json). */
const UI_CLIENT = { clientId: 'temporal-ui', clientSecret: 'temporal-ui-test-secret' };
// erin is a reader by her group (sre), alice by name; dave signs in fine but may not read payloads.
const READERS = ['group:sre', 'alice'];
const READER = 'erin';
const NON_READER = 'dave';
// What the UI shows when the codec server refuses (or cannot be reached): its own words.
const CODEC_ERROR = 'Codec Server could not connect';
const ENCRYPTED_IN_BASE64 = Buffer.from(ENCRYPTED_ENCODING).toString('base64');
const UI_WAIT_MS = 60_000;

describe('Temporal Web UI with sign-in: decoded input for payload readers only', { timeout: 600_000 }, () => {
  let workDir: string;
  let docker: Awaited<ReturnType<typeof startLocalDockerStack>> | undefined;
  let temporal: DevStack | undefined;
  let codec: ManagedProcess | undefined;
  let ui: TemporalUi | undefined;
  let browser: Browser | undefined;
  let workflowPage: string;
  let workflowId: string;
  let runId: string;

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'codec-ui-'));
    // Screenshots of an earlier run must not pass for this one's.
    await rm(ARTIFACTS, { recursive: true, force: true });
    await mkdir(ARTIFACTS, { recursive: true });
    const keycloak = await useKeycloak();
    docker = await startLocalDockerStack(path.join(workDir, 'docker'));
    const repository = `${docker.registry.address}/web-shop`;
    await buildServiceImage(docker, { repository, version: '1.0.0', healthy: true });
    // One platform policy for the worker and the codec server: names are bare for the deploy's CLI calls, tokens
    // of the provider for the codec server.
    const base = policyObject({
      sourceRoots: [workDir],
      dockerHost: docker.engine.dockerHost,
      ports: { staging: await freePort(), production: await freePort() },
    });
    const { specFile, policyFile } = await writeTestFiles(workDir, {
      spec: specYaml({ repository }, `container:\n  env:\n    SHOP_BANNER: ${MARKER}\n`),
      policy: {
        ...base,
        identity: { insecureDevMode: true, oidc: { issuer: keycloak.issuer(), audience: AUDIENCE } },
        payloadReaders: READERS,
      },
    });
    const started = await startTestTemporal(workDir, policyFile);
    temporal = started.temporal;

    // A production deploy stops at its approval gate: the workflow stays open with the spec in its input.
    const deploy = await runCli(['deploy', '-f', specFile, '--env', 'production', '--version', '1.0.0'], started.env);
    assert.equal(deploy.code, 0, deploy.stderr);
    const id = deploymentIdIn(deploy.stdout);
    ({ workflowId, runId } = parseDeploymentId(id));
    await waitForStatus(id, started.env, (s) => s.state === 'awaiting-approval');

    // Both ports first: the codec server allows the UI's origin, the UI calls the codec server.
    const uiPort = await freePort();
    const codecPort = await freePort();
    const uiOrigin = `http://127.0.0.1:${uiPort}`;
    const authority = await createCertificateAuthority(path.join(workDir, 'pki'), 'deploy-agent codec test CA');
    const certificate = await authority.issue('codec-server', 'server');
    const ca = readFileSync(authority.caPath);
    codec = await startAndWait({
      name: 'codec-server',
      command: process.execPath,
      args: [
        ...[CLI, 'codec-server', '--host', '127.0.0.1', '--port', String(codecPort)],
        ...['--allow-origin', uiOrigin, '--policy', policyFile],
        ...['--tls-cert', certificate.certPath, '--tls-key', certificate.keyPath],
      ],
      logFile: path.join(workDir, 'codec-server.log'),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...testKeysEnv() },
      // A request without a token is refused: the server answers, over TLS the test CA vouches for.
      ready: { probe: async () => (await postStatus(`https://127.0.0.1:${codecPort}/decode`, ca)) === 401 },
    });
    ui = await startTemporalUi({
      workDir: path.join(workDir, 'ui'),
      frontendAddress: temporal.address,
      port: uiPort,
      namespace: temporal.namespace,
      sso: { issuer: keycloak.issuer(), ...UI_CLIENT },
      codec: { endpoint: `https://127.0.0.1:${codecPort}`, passAccessToken: true },
    });
    assert.equal(ui.url, uiOrigin);
    workflowPage = `${ui.url}/namespaces/${temporal.namespace}/workflows/${workflowId}/${runId}/history`;

    const home = await homeTrusting(path.join(workDir, 'browser-home'), [authority.caPath]);
    browser = await chromium.launch({
      executablePath: chromiumPath(),
      env: { PATH: process.env.PATH ?? '', HOME: home },
    });
  });

  after(async () => {
    // Each step on its own: one that fails must not leave the others running.
    const steps = [
      () => browser?.close(),
      () => ui?.stop(),
      () => codec?.stop(),
      () => temporal?.stop(),
      () => docker?.stop(),
    ];
    for (const step of steps) await Promise.resolve(step()).catch(() => undefined);
    await rm(workDir, { recursive: true, force: true });
  });

  it('shows the decoded input, marker included, to a signed-in payload reader', async (t) => {
    await withPage(t, READER, async (page) => {
      await signInAndOpenWorkflow(page, READER);
      await shown(page, MARKER);
      await screenshot(t, page, 'reader-decoded-input');
      assert.equal(
        await page.getByText(CODEC_ERROR).filter({ visible: true }).count(),
        0,
        'no codec error for a reader',
      );
    });
    const log = await readFile(codec!.logFile, 'utf8');
    assert.match(log, new RegExp(`decode of \\d+ payloads for ${READER}`), 'the codec decoded for the reader');
  });

  it('shows a signed-in user who is no payload reader the refusal and the input still encrypted', async (t) => {
    await withPage(t, NON_READER, async (page) => {
      await signInAndOpenWorkflow(page, NON_READER);
      await shown(page, CODEC_ERROR);
      // The input panel shows the sealed payload as it is: its encoding (base64 of binary/encrypted) and ciphertext.
      await shown(page, ENCRYPTED_IN_BASE64);
      await screenshot(t, page, 'non-reader-ciphertext');
      const text = await page.locator('body').innerText();
      assert.ok(!text.includes(MARKER), 'the marker is not shown to a non-reader');
      assert.ok(!(await page.content()).includes(MARKER), 'nor anywhere in the page');
    });
    const log = await readFile(codec!.logFile, 'utf8');
    assert.match(log, new RegExp(`refused POST /decode .*403 ${NON_READER} may not read payloads`));
    assert.doesNotMatch(log, new RegExp(`decode of \\d+ payloads for ${NON_READER}`));
  });

  it('leaves only ciphertext in the raw history (read without the codec)', async () => {
    const connection = await Connection.connect({ address: temporal!.address });
    try {
      const raw = new Client({ connection, namespace: temporal!.namespace });
      const history = await raw.workflow.getHandle(workflowId, runId).fetchHistory();
      const text = historyToJSON(history);
      const payloads = payloadsIn(JSON.parse(text) as unknown);
      const input = payloads.filter(({ path }) =>
        /^events\.\d+\.workflowExecutionStartedEventAttributes\.input\./.test(path),
      );
      assert.ok(input.length > 0, 'the started event has an input');
      // Patch markers are written by the SDK's core: a patch id of the workflow code, never user data.
      const patchMarker = /^events\.\d+\.markerRecordedEventAttributes\.details\.patch-data\./;
      const plain = payloads.filter(
        ({ path, payload }) => encodingOf(payload) !== ENCRYPTED_ENCODING && !patchMarker.test(path),
      );
      assert.deepEqual(
        plain.map(({ path, payload }) => `${path}: ${encodingOf(payload)}`),
        [],
        'every payload is encrypted',
      );
      assert.ok(!text.includes(MARKER), 'the marker is not in the raw history');
      assert.ok(!text.includes(Buffer.from(MARKER).toString('base64').slice(0, 16)), 'nor in base64');
    } finally {
      await connection.close();
    }
  });

  it("keeps the users' tokens out of the codec server's and the UI server's logs", async () => {
    for (const file of [codec!.logFile, ui!.logFile]) {
      const log = await readFile(file, 'utf8');
      assert.ok(log.length > 0, `${file} is written`);
      // Every JWT starts with the base64 of '{"': a token would show as eyJ...
      assert.doesNotMatch(log, /eyJ[\w-]{10,}\.[\w-]{10,}/, `a token in ${file}`);
    }
  });

  /** A fresh browser context per user (no shared session), with a screenshot when the work fails. */
  async function withPage(t: TestContext, user: string, work: (page: Page) => Promise<void>): Promise<void> {
    const context: BrowserContext = await browser!.newContext({ viewport: { width: 1400, height: 1400 } });
    const page = await context.newPage();
    try {
      await work(page);
    } catch (error) {
      await screenshot(t, page, `${user}-failure`).catch(() => undefined);
      throw error;
    } finally {
      await context.close();
    }
  }

  /** The UI's login page, Keycloak's form, back to the UI, then the workflow's page. */
  async function signInAndOpenWorkflow(page: Page, user: string): Promise<void> {
    await page.goto(workflowPage);
    await page.getByText('Continue to SSO').click({ timeout: UI_WAIT_MS });
    await page.locator('#username').waitFor({ state: 'visible', timeout: UI_WAIT_MS });
    await page.fill('#username', user);
    await page.fill('#password', user);
    await page.click('#kc-login');
    await page.waitForURL((url) => url.toString().startsWith(ui!.url), { timeout: UI_WAIT_MS });
    if (page.url() !== workflowPage) await page.goto(workflowPage);
    await shown(page, workflowId);
  }

  async function screenshot(t: TestContext, page: Page, name: string): Promise<void> {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    t.diagnostic(`screenshot: ${file}`);
  }
});

/** Waits until `text` is on screen; the UI keeps hidden copies of some messages, which do not count. */
async function shown(page: Page, text: string): Promise<void> {
  await page.getByText(text).filter({ visible: true }).first().waitFor({ state: 'visible', timeout: UI_WAIT_MS });
}

/** The status of a bodiless POST over https, trusting only `ca`. */
function postStatus(url: string, ca: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = https.request(url, { method: 'POST', ca, timeout: 2_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.once('timeout', () => request.destroy(new Error('timed out')));
    request.once('error', reject);
    request.end();
  });
}
