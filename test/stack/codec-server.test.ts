// The codec server (`deploy-agent codec-server`, its own process) against a real OpenID provider (Keycloak, realm
// stack/keycloak/realm.json) and the Temporal CLI: a payload reader's token decodes, everyone else is refused and
// nothing is decoded for them. Nothing of the provider, jose or the codec is mocked.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { dataConverter } from '../../codec/data-converter.js';
import { ALLOWED_HEADERS } from '../../codec/server.js';
import { ENCRYPTED_ENCODING, PayloadEncryptionCodec } from '../../codec/payload-codec.js';
import { loadKeyRingFile, writeNewKeyRing } from '../../keys/key-ring.js';
import { startDevStack, type DevStack } from '../../stack/dev.js';
import { writePolicy } from '../../stack/policy.js';
import { freePort, type ManagedProcess, startAndWait } from '../../stack/processes.js';
import { temporalCliPath } from '../../stack/temporal.js';
import { AUDIENCE, expiredToken, forgedToken, useKeycloak, userToken } from '../support/oidc.js';

const CLI = fileURLToPath(new URL('../../client/cli.js', import.meta.url));
const UI_ORIGIN = 'http://127.0.0.1:8233';
const MARKER = 'codec-marker-5b1e9c';
const run = promisify(execFile);

describe(
  'codec server: decoded payloads for payload readers only (Keycloak, Temporal CLI)',
  { timeout: 300_000 },
  () => {
    let workDir: string;
    let keysFile: string;
    let server: ManagedProcess | undefined;
    let url: string;
    let temporal: DevStack | undefined;
    let codec: PayloadEncryptionCodec;
    let sealed: Payload[];
    const tokens: string[] = [];
    let expired: Promise<string>;

    before(async () => {
      workDir = await mkdtemp(path.join(tmpdir(), 'codec-server-'));
      const keycloak = await useKeycloak();
      expired = expiredToken('erin');
      expired.catch(() => undefined);
      keysFile = path.join(workDir, 'keys.json');
      writeNewKeyRing(keysFile);
      codec = new PayloadEncryptionCodec(loadKeyRingFile(keysFile));
      sealed = await codec.encode([defaultPayloadConverter.toPayload({ secret: MARKER })]);
      const policyFile = await writePolicy(path.join(workDir, 'policy.yaml'), {
        identity: { oidc: { issuer: keycloak.issuer(), audience: AUDIENCE } },
        // erin by her group, alice by name; bob, carol and dave are verified but no readers.
        payloadReaders: ['group:sre', 'alice'],
        environments: { staging: { docker: { host: 'unix:///nowhere.sock', ports: {} } } },
      });
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      server = await startAndWait({
        name: 'codec-server',
        command: process.execPath,
        args: [CLI, 'codec-server', '--port', String(port), '--allow-origin', UI_ORIGIN, '--policy', policyFile],
        logFile: path.join(workDir, 'codec-server.log'),
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', DEPLOY_AGENT_KEYS_FILE: keysFile },
        ready: { probe: async () => (await fetch(`${url}/decode`, { method: 'POST' })).status === 401 },
      });
    });

    after(async () => {
      await server?.stop();
      await temporal?.stop();
      await rm(workDir, { recursive: true, force: true });
    });

    const post = async (op: string, token?: string, payloads: unknown = sealed.map(toJson)) => {
      if (token) tokens.push(token);
      const response = await fetch(`${url}/${op}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ payloads }),
      });
      const text = await response.text();
      return {
        status: response.status,
        text,
        body: JSON.parse(text) as { payloads?: JsonPayload[]; message?: string },
      };
    };

    it("decodes for a reader's token (by group and by name), and encodes too", async () => {
      for (const user of ['erin', 'alice']) {
        const { status, body } = await post('decode', await userToken(user));
        assert.equal(status, 200, user);
        const [payload] = (body.payloads ?? []).map(fromJson);
        assert.deepEqual(defaultPayloadConverter.fromPayload(payload as Payload), { secret: MARKER });
      }
      const plain = toJson(defaultPayloadConverter.toPayload({ secret: MARKER }));
      const encoded = await post('encode', await userToken('erin'), [plain]);
      assert.equal(encoded.status, 200);
      const [again] = (encoded.body.payloads ?? []).map(fromJson);
      assert.equal(new TextDecoder().decode(again?.metadata?.encoding ?? undefined), ENCRYPTED_ENCODING);
      assert.ok(!encoded.text.includes(MARKER));
      assert.deepEqual(defaultPayloadConverter.fromPayload((await codec.decode([again as Payload]))[0] as Payload), {
        secret: MARKER,
      });
    });

    it('answers 401 without a token and with a forged, foreign, misaddressed or expired one; nothing decoded', async () => {
      const real = await userToken('erin');
      const cases: [string, string | undefined][] = [
        ['no token', undefined],
        ['forged', await forgedToken(real)],
        ['other issuer', await userToken('alice', { realm: 'other' })],
        ['other audience', await userToken('erin', { client: 'other-service' })],
        ['expired', await expired],
        ['not a JWT', 'not-a-token'],
      ];
      for (const [what, token] of cases) {
        const { status, text, body } = await post('decode', token);
        assert.equal(status, 401, `${what}: ${text}`);
        assert.ok(body.message, `${what}: a message`);
        assert.ok(!text.includes(MARKER) && body.payloads === undefined, `${what}: nothing decoded`);
      }
    });

    it('answers 403 to verified users who are not payload readers on /decode; /encode gives them ciphertext', async () => {
      const refused = await post('decode', await userToken('dave'));
      assert.equal(refused.status, 403, refused.text);
      assert.match(refused.body.message ?? '', /dave may not read payloads/);
      assert.ok(!refused.text.includes(MARKER));
      const bob = await post('decode', await userToken('bob'));
      assert.equal(bob.status, 403);
      // Encoding reveals nothing: a requester without the keys starts a deployment this way.
      const plain = toJson(defaultPayloadConverter.toPayload({ secret: MARKER }));
      const encoded = await post('encode', await userToken('dave'), [plain]);
      assert.equal(encoded.status, 200, encoded.text);
      assert.ok(!encoded.text.includes(MARKER));
      const [sealedForDave] = (encoded.body.payloads ?? []).map(fromJson);
      assert.equal(new TextDecoder().decode(sealedForDave?.metadata?.encoding ?? undefined), ENCRYPTED_ENCODING);
      // And what dave sealed, dave cannot read back.
      const back = await post('decode', await userToken('dave'), encoded.body.payloads);
      assert.equal(back.status, 403);
      assert.ok(!back.text.includes(MARKER));
    });

    it('answers CORS preflights for the allowed origin only', async () => {
      const preflight = (origin: string) =>
        fetch(`${url}/decode`, {
          method: 'OPTIONS',
          headers: {
            origin,
            'access-control-request-method': 'POST',
            'access-control-request-headers': 'content-type,x-namespace,authorization',
          },
        });
      const allowed = await preflight(UI_ORIGIN);
      assert.equal(allowed.status, 204);
      assert.equal(allowed.headers.get('access-control-allow-origin'), UI_ORIGIN);
      assert.equal(allowed.headers.get('access-control-allow-headers'), ALLOWED_HEADERS);
      const foreign = await preflight('http://evil.example');
      assert.equal(foreign.headers.get('access-control-allow-origin'), null);
      assert.equal(foreign.headers.get('access-control-allow-headers'), null);
      assert.notEqual(foreign.status, 204);
      // A reader's token sent from a foreign page is refused too, not just unreadable for the page.
      const response = await fetch(`${url}/decode`, {
        method: 'POST',
        headers: { origin: 'http://evil.example', authorization: `Bearer ${await userToken('erin')}` },
        body: JSON.stringify({ payloads: sealed.map(toJson) }),
      });
      assert.equal(response.status, 403);
      assert.ok(!(await response.text()).includes(MARKER));
    });

    it('logs refusals without the token', async () => {
      const log = await readFile(path.join(workDir, 'codec-server.log'), 'utf8');
      assert.match(log, /refused POST \/decode .*401/);
      assert.match(log, /refused POST \/decode .*403 dave may not read payloads/);
      for (const token of tokens) assert.ok(!log.includes(token.split('.')[2] ?? token), 'a token in the log');
    });

    it('lets `temporal workflow show --codec-endpoint` decode a real encrypted history for a reader only', async () => {
      temporal = await startDevStack({
        port: await freePort(),
        uiPort: await freePort(),
        reportsDir: path.join(workDir, 'reports'),
        policyFile: path.join(workDir, 'policy.yaml'),
        worker: false,
      });
      const connection = await Connection.connect({ address: temporal.address });
      try {
        // Started, never run (no worker polls this queue): its started event holds the input, sealed by the client.
        const client = new Client({ connection, dataConverter: dataConverter(loadKeyRingFile(keysFile)) });
        const handle = await client.workflow.start('deployWorkflow', {
          taskQueue: 'codec-server-test',
          workflowId: 'codec-server-history',
          args: [{ secret: MARKER }],
        });
        const show = async (...extra: string[]) =>
          (
            await run(
              temporalCliPath(),
              [
                'workflow',
                'show',
                '--workflow-id',
                handle.workflowId,
                '--address',
                temporal!.address,
                '-o',
                'json',
                ...extra,
              ],
              { timeout: 60_000 },
            )
          ).stdout;
        const hasMarker = (output: string) =>
          output.includes(MARKER) ||
          output.includes(Buffer.from(JSON.stringify({ secret: MARKER })).toString('base64'));
        assert.ok(!hasMarker(await show()), 'without the codec: ciphertext only');
        const decoded = await show('--codec-endpoint', url, '--codec-auth', `Bearer ${await userToken('erin')}`);
        assert.ok(hasMarker(decoded), `a reader sees the input:\n${decoded.slice(0, 2000)}`);
        const refused = await show('--codec-endpoint', url, '--codec-auth', `Bearer ${await userToken('dave')}`).then(
          (output) => output,
          (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
        );
        assert.ok(!hasMarker(refused), 'a non-reader does not');
        await handle.terminate();
      } finally {
        await connection.close();
      }
    });
  },
);

interface JsonPayload {
  metadata: Record<string, string>;
  data: string;
}

function toJson(payload: Payload): JsonPayload {
  const base64 = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? new Uint8Array()).toString('base64');
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, base64(v)])),
    data: base64(payload.data),
  };
}

function fromJson(payload: JsonPayload): Payload {
  const bytes = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata).map(([k, v]) => [k, bytes(v)])),
    data: bytes(payload.data),
  };
}
