import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { PayloadEncryptionCodec } from '../../codec/payload-codec.js';
import { PayloadJsonError, payloadFromJson, payloadsFromBody, payloadToJson } from '../../codec/payload-json.js';
import { clientDataConverter, expiresSoon, payloadsOfAnswer, RemoteCodec } from '../../client/remote-codec.js';
import { CliFailure, EXIT, InvalidInput } from '../../domain/failures.js';

const ENDPOINT = 'https://codec.example.com:8088';
const KEYS = JSON.stringify({ current: 'k1', keys: { k1: randomBytes(32).toString('base64') } });
const jwt = (claims: Record<string, unknown>) =>
  `eyJhbGciOiJSUzI1NiJ9.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.c2lnbmF0dXJl`;
const exitOf = (error: unknown) => (error instanceof CliFailure ? error.exitCode : undefined);

describe('payloads in the codec protocol JSON', () => {
  it('round-trips a payload, metadata and data', () => {
    const payload = defaultPayloadConverter.toPayload({ a: 1 });
    const back = payloadFromJson(JSON.parse(JSON.stringify(payloadToJson(payload))), 0);
    assert.deepEqual(defaultPayloadConverter.fromPayload(back), { a: 1 });
  });

  it('refuses a body without payloads and names a payload that is not base64', () => {
    assert.throws(() => payloadsFromBody({}), PayloadJsonError);
    assert.throws(() => payloadsFromBody(null), /expected a JSON body \{payloads: \[\.\.\.\]\}/);
    assert.throws(() => payloadsFromBody({ payloads: [{ data: '' }, { data: 'not base64!' }] }), /payloads\[1\]/);
    assert.throws(() => payloadsFromBody({ payloads: [{ metadata: { encoding: 3 } }] }), /payloads\[0\]/);
  });
});

describe("the codec server's answer to the CLI", () => {
  const one = JSON.stringify({ payloads: [payloadToJson(defaultPayloadConverter.toPayload('x'))] });
  const failure = (status: number, text: string) => {
    try {
      payloadsOfAnswer(ENDPOINT, 'decode', 1, { status, text });
    } catch (error) {
      return error as CliFailure;
    }
    assert.fail('no failure');
  };

  it('gives the payloads of a 200', () => {
    const [payload] = payloadsOfAnswer(ENDPOINT, 'decode', 1, { status: 200, text: one });
    assert.equal(defaultPayloadConverter.fromPayload(payload!), 'x');
  });

  it('makes 401 and 403 invalid input (exit 2) naming the server and quoting its message', () => {
    for (const status of [401, 403]) {
      const error = failure(status, JSON.stringify({ message: 'dave may not read payloads' }));
      assert.ok(error instanceof InvalidInput);
      assert.equal(error.message, `the codec server at ${ENDPOINT} refused: dave may not read payloads`);
    }
    assert.match(failure(404, 'not json').message, /refused: HTTP 404/);
  });

  it('makes 5xx exit 4 (the provider behind it did not answer)', () => {
    const error = failure(503, JSON.stringify({ message: 'the OpenID provider is unreachable' }));
    assert.equal(exitOf(error), EXIT.unreachable);
    assert.match(error.message, /codec server at .* cannot answer now: the OpenID provider is unreachable/);
  });

  it('refuses a 200 that is not the codec protocol, or the wrong number of payloads (exit 2)', () => {
    assert.equal(exitOf(failure(200, '<html>')), EXIT.invalid);
    assert.match(failure(200, JSON.stringify({ payloads: [] })).message, /with 0 payloads for 1/);
  });
});

describe('choosing the CLI payload codec', () => {
  it('prefers the local key ring over a codec endpoint', () => {
    const converter = clientDataConverter('default', {
      DEPLOY_AGENT_KEYS: KEYS,
      DEPLOY_AGENT_CODEC_ENDPOINT: ENDPOINT,
    });
    assert.ok(converter.payloadCodecs?.[0] instanceof PayloadEncryptionCodec);
  });

  it('uses the codec server without keys', () => {
    const converter = clientDataConverter('default', { DEPLOY_AGENT_CODEC_ENDPOINT: ENDPOINT });
    assert.ok(converter.payloadCodecs?.[0] instanceof RemoteCodec);
  });

  it('refuses with neither, naming both ways (exit 2)', () => {
    assert.throws(
      () => clientDataConverter('default', { DEPLOY_AGENT_KEYS: '' }),
      (error: unknown) =>
        error instanceof InvalidInput &&
        /DEPLOY_AGENT_KEYS_FILE/.test(error.message) &&
        /DEPLOY_AGENT_CODEC_ENDPOINT/.test(error.message),
    );
  });

  it('refuses an endpoint that is no http(s) base URL, and a CA for plain http or unreadable', () => {
    for (const endpoint of ['codec.example.com', 'ftp://codec.example.com', 'https://u:p@codec.example.com'])
      assert.throws(() => clientDataConverter('default', { DEPLOY_AGENT_CODEC_ENDPOINT: endpoint }), InvalidInput);
    assert.throws(
      () =>
        clientDataConverter('default', {
          DEPLOY_AGENT_CODEC_ENDPOINT: 'http://codec.example.com',
          DEPLOY_AGENT_CODEC_CA: '/dev/null',
        }),
      /DEPLOY_AGENT_CODEC_CA is for an https endpoint/,
    );
    assert.throws(
      () =>
        clientDataConverter('default', {
          DEPLOY_AGENT_CODEC_ENDPOINT: ENDPOINT,
          DEPLOY_AGENT_CODEC_CA: '/nonexistent/ca.pem',
        }),
      /DEPLOY_AGENT_CODEC_CA \/nonexistent\/ca\.pem: cannot be read \(ENOENT\)/,
    );
  });
});

describe('when the CLI fetches another token for the codec server', () => {
  const now = 1_000_000;
  it('reuses a token until 30 s before its exp', () => {
    assert.equal(expiresSoon(jwt({ exp: now + 300 }), now, now), false);
    assert.equal(expiresSoon(jwt({ exp: now + 20 }), now, now), true);
  });

  it('reuses a token without a readable exp for a minute only', () => {
    assert.equal(expiresSoon('opaque-token-without-claims', now, now - 10), false);
    assert.equal(expiresSoon('opaque-token-without-claims', now, now - 61), true);
  });
});
