import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { temporalUiConfig, type TemporalUiOptions } from '../../stack/ui.js';

const sso = { issuer: 'http://127.0.0.1:8080/realms/r', clientId: 'temporal-ui', clientSecret: 's3cret' };
const base: TemporalUiOptions = { workDir: '/nowhere', frontendAddress: '127.0.0.1:7233' };

describe('Temporal UI server configuration', () => {
  it("signs in through the provider and passes the user's token to an https codec server", () => {
    const config = temporalUiConfig({ ...base, sso, codec: { endpoint: 'https://127.0.0.1:8088' } }, 4000) as {
      auth: { enabled: boolean; providers: { callbackUrl: string; providerUrl: string }[] };
      codec: { endpoint: string; passAccessToken: boolean };
      cors: { allowOrigins: string[] };
      temporalGrpcAddress: string;
    };
    assert.equal(config.temporalGrpcAddress, '127.0.0.1:7233');
    assert.equal(config.auth.enabled, true);
    assert.equal(config.auth.providers[0]?.callbackUrl, 'http://127.0.0.1:4000/auth/sso/callback');
    assert.equal(config.auth.providers[0]?.providerUrl, sso.issuer);
    assert.deepEqual(config.codec, {
      endpoint: 'https://127.0.0.1:8088',
      passAccessToken: true,
      includeCredentials: false,
    });
    assert.deepEqual(config.cors.allowOrigins, ['http://127.0.0.1:4000']);
  });

  it('refuses to pass the token to an http codec server (the UI would silently send none)', () => {
    assert.throws(
      () => temporalUiConfig({ ...base, sso, codec: { endpoint: 'http://127.0.0.1:8088' } }, 4000),
      /codec\.endpoint http:\/\/127\.0\.0\.1:8088: expected https/,
    );
  });

  it('refuses passAccessToken without sign-in, and an endpoint that is no URL', () => {
    assert.throws(
      () => temporalUiConfig({ ...base, codec: { endpoint: 'https://x', passAccessToken: true } }, 4000),
      /passAccessToken needs sso/,
    );
    assert.throws(
      () => temporalUiConfig({ ...base, sso, codec: { endpoint: 'not a url' } }, 4000),
      /expected an http\(s\) URL/,
    );
  });

  it('takes TLS to the frontend, with host verification', () => {
    const config = temporalUiConfig(
      { ...base, frontendTls: { caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' } },
      4000,
    ) as { tls: Record<string, unknown>; auth: { enabled: boolean } };
    assert.equal(config.tls.caFile, 'ca.pem');
    assert.equal(config.tls.enableHostVerification, true);
    assert.equal(config.auth.enabled, false);
  });
});
