// Proven identities against a real OpenID provider: Keycloak with the test realms of stack/keycloak/realm.json,
// shared by the whole run (DEPLOY_AGENT_TEST_OIDC_URL) or started for this file alone. No part of the provider or
// of jose is mocked: every token here was issued by Keycloak, or forged from one.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { verifyCredential } from '../../activities/identity.js';
import { credentialFor, credentialsFile, type CachedLogin } from '../../client/credentials.js';
import { loginCommand } from '../../client/login.js';
import { CliFailure, EXIT, InvalidInput } from '../../domain/failures.js';
import { identitySettingsSchema, type Credential, type IdentitySettings } from '../../domain/identity.js';
import { freePort } from '../../stack/processes.js';
import {
  AUDIENCE,
  CI_CLIENT,
  claimsOf,
  clientCredentialsToken,
  completeDeviceLogin,
  expiredToken,
  forgedToken,
  useKeycloak,
  userToken,
  type OidcProvider,
} from '../support/oidc.js';

const CREDENTIAL_ENV = [
  'DEPLOY_AGENT_TOKEN',
  'DEPLOY_AGENT_TOKEN_FILE',
  'DEPLOY_AGENT_CLIENT_ID',
  'DEPLOY_AGENT_CLIENT_SECRET',
  'DEPLOY_AGENT_OIDC_ISSUER',
  'DEPLOY_AGENT_OIDC_CLIENT_ID',
  'DEPLOY_AGENT_USER',
  'XDG_CONFIG_HOME',
  'HOME',
];

/** Runs fn with exactly these credential variables set (the others removed), then puts the environment back. */
async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(CREDENTIAL_ENV.map((name) => [name, process.env[name]]));
  for (const name of CREDENTIAL_ENV) delete process.env[name];
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

const oidc = (token: string): Credential => ({ kind: 'oidc', token });

/** Asserts a Forbidden refusal that never quotes the token; returns its message. */
async function refusal(promise: Promise<unknown>, token?: string): Promise<string> {
  let message = '';
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    assert.equal(error.type, 'Forbidden');
    assert.equal(error.nonRetryable, true);
    if (token) {
      assert.ok(!error.message.includes(token), 'the refusal quotes the token');
      assert.ok(!error.message.includes(token.split('.')[2] ?? token), 'the refusal quotes the signature');
    }
    message = error.message;
    return true;
  });
  return message;
}

describe('identity: tokens of a real OpenID provider (Keycloak)', { timeout: 300_000 }, () => {
  let keycloak: OidcProvider;
  let settings: IdentitySettings;
  // Waiting for real expiry takes seconds: started first, awaited by the tests that need it.
  let expired: Promise<string>;
  let aging: Promise<string>;

  before(async () => {
    keycloak = await useKeycloak();
    settings = identitySettingsSchema.parse({ oidc: { issuer: keycloak.issuer(), audience: AUDIENCE } });
    expired = expiredToken('bob');
    aging = userToken('erin');
    // Awaited by their tests; a failure must not go unhandled before that.
    expired.catch(() => undefined);
    aging.catch(() => undefined);
  });

  it('accepts a user token: the user, the groups, the token id and when it was issued', async () => {
    const token = await userToken('alice');
    const claims = claimsOf(token);
    const identity = await verifyCredential({ credential: oidc(token), settings });
    assert.deepEqual(identity, {
      user: 'alice',
      groups: ['release-managers'],
      proof: 'oidc',
      issuer: keycloak.issuer(),
      tokenId: claims.jti,
      issuedAt: new Date((claims.iat ?? 0) * 1000).toISOString(),
    });
    assert.ok(identity.tokenId, 'Keycloak tokens carry a jti');
  });

  it('reads each test user’s groups from the flat groups claim', async () => {
    const expected: Record<string, string[]> = { bob: ['approvers'], carol: ['approvers'], dave: [], erin: ['sre'] };
    for (const [user, groups] of Object.entries(expected)) {
      const identity = await verifyCredential({ credential: oidc(await userToken(user)), settings });
      assert.equal(identity.user, user);
      assert.deepEqual(identity.groups, groups);
    }
  });

  it('accepts a client-credentials token as its service account (preferred_username), not its azp', async () => {
    const token = await clientCredentialsToken();
    assert.equal(claimsOf(token).azp, CI_CLIENT.id);
    const identity = await verifyCredential({ credential: oidc(token), settings });
    assert.equal(identity.user, `service-account-${CI_CLIENT.id}`);
    assert.deepEqual(identity.groups, []);
    assert.equal(identity.proof, 'oidc');
  });

  it('refuses a token with the same claims signed by a key the provider does not have', async () => {
    const real = await userToken('alice');
    const forged = await forgedToken(real);
    assert.deepEqual(claimsOf(forged), claimsOf(real));
    assert.match(
      await refusal(verifyCredential({ credential: oidc(forged), settings }), forged),
      /token signature invalid/,
    );
    const otherKey = await forgedToken(real, { kid: 'not-a-key-of-the-provider' });
    assert.match(
      await refusal(verifyCredential({ credential: oidc(otherKey), settings }), otherKey),
      /token signature invalid: signed with a key .* does not publish/,
    );
  });

  it('refuses a token of another issuer, naming both', async () => {
    const token = await userToken('alice', { realm: 'other' });
    const message = await refusal(verifyCredential({ credential: oidc(token), settings }), token);
    assert.equal(message, `token issued by "${keycloak.issuer('other')}", expected ${keycloak.issuer()}`);
  });

  it('refuses a token issued for another audience', async () => {
    const token = await userToken('bob', { client: 'other-service' });
    assert.match(
      await refusal(verifyCredential({ credential: oidc(token), settings }), token),
      /^token audience .*, expected deploy-agent: it was issued for another service$/,
    );
  });

  it('refuses a token that really expired, past the clock tolerance', async () => {
    const token = await expired;
    const { exp } = claimsOf(token);
    const message = await refusal(verifyCredential({ credential: oidc(token), settings }), token);
    assert.equal(message, `token expired at ${new Date((exp ?? 0) * 1000).toISOString()}: sign in again for a new one`);
  });

  it('refuses a token older than a vote allows, and accepts it without that limit', async () => {
    const token = await aging;
    const { iat } = claimsOf(token);
    // Older than 1 s plus the 5 s clock tolerance, whatever ran before.
    const waitMs = ((iat ?? 0) + 7) * 1000 - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    assert.match(
      await refusal(verifyCredential({ credential: oidc(token), settings, maxAgeMs: 1_000 }), token),
      /^token issued at .*, more than 1s ago: a vote or resolve needs a freshly issued token$/,
    );
    assert.equal((await verifyCredential({ credential: oidc(token), settings, maxAgeMs: 300_000 })).user, 'erin');
    assert.equal((await verifyCredential({ credential: oidc(token), settings })).user, 'erin');
  });

  it('refuses what is not a token', async () => {
    assert.match(
      await refusal(verifyCredential({ credential: oidc('not-a-jwt-but-long-enough'), settings })),
      /^not a token/,
    );
    assert.match(
      await refusal(verifyCredential({ credential: { kind: 'oidc', token: 'short' }, settings })),
      /^not a credential/,
    );
  });

  it('refuses an insecure-dev name unless the policy turns dev mode on', async () => {
    const credential: Credential = { kind: 'insecure-dev', user: 'mallory' };
    assert.match(
      await refusal(verifyCredential({ credential, settings })),
      /^insecure dev identities are not accepted by this worker/,
    );
    const devMode = identitySettingsSchema.parse({ insecureDevMode: true });
    assert.deepEqual(await verifyCredential({ credential, settings: devMode }), {
      user: 'mallory',
      groups: [],
      proof: 'insecure-dev',
    });
    assert.match(
      await refusal(verifyCredential({ credential: oidc(await userToken('alice')), settings: devMode })),
      /names no OpenID provider/,
    );
  });

  it('reports a provider that does not answer as unreachable (retryable)', async () => {
    const issuer = `http://127.0.0.1:${await freePort()}/realms/deploy-agent`;
    // Its issuer must be the configured one, or it is refused before any provider is asked.
    const token = await forgedToken(await userToken('alice'), { claims: { iss: issuer } });
    await assert.rejects(
      verifyCredential({
        credential: oidc(token),
        settings: identitySettingsSchema.parse({ oidc: { issuer, audience: AUDIENCE } }),
      }),
      (error: unknown) => {
        assert.ok(error instanceof ApplicationFailure);
        assert.equal(error.type, 'TargetUnreachable');
        assert.equal(error.nonRetryable, false);
        assert.match(error.message, /OpenID provider .* is unreachable: .*ECONNREFUSED/);
        assert.ok(!error.message.includes(token));
        return true;
      },
    );
  });

  describe('the CLI side', () => {
    let home: string;

    before(async () => {
      home = await mkdtemp(path.join(tmpdir(), 'identity-cli-'));
    });
    after(async () => {
      await rm(home, { recursive: true, force: true });
    });

    it('logs in by the device flow, keeps the login private, and votes with a fresh token', async () => {
      const configHome = path.join(home, 'login', 'config');
      await withEnv({ HOME: path.join(home, 'login'), XDG_CONFIG_HOME: configHome }, async () => {
        let shown = '';
        let linkShown: (link: string) => void = () => undefined;
        const link = new Promise<string>((resolve) => (linkShown = resolve));
        const output = {
          write(text: string) {
            shown += text;
            const match = /open (\S+\?user_code=\S+)/.exec(shown);
            if (match?.[1]) linkShown(match[1]);
          },
        };
        const login = loginCommand({ issuer: keycloak.issuer(), clientId: 'deploy-agent-cli', output });
        const browser = link.then((uri) => completeDeviceLogin(uri, 'carol'));
        // Whichever fails first is the failure to see.
        await Promise.all([login, browser]);
        assert.equal(await login, 0);
        assert.match(shown, /enter the code [A-Z]{4}-[A-Z]{4}/);
        assert.match(shown, /Signed in to .* as carol/);

        const file = credentialsFile();
        assert.equal(file, path.join(configHome, 'deploy-agent', 'credentials.json'));
        assert.equal((await stat(file)).mode & 0o777, 0o600);
        assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
        const saved = JSON.parse(await readFile(file, 'utf8')) as CachedLogin;
        assert.equal(saved.issuer, keycloak.issuer());
        assert.equal(saved.clientId, 'deploy-agent-cli');
        assert.ok(saved.refresh_token);
        assert.ok(saved.expires_at > Date.now() / 1000);

        const request = await credentialFor('request');
        assert.deepEqual(request, { kind: 'oidc', token: saved.access_token });
        const first = await credentialFor('vote');
        const second = await credentialFor('vote');
        assert.equal(first.kind, 'oidc');
        const voter = await verifyCredential({ credential: first, settings, maxAgeMs: 300_000 });
        const again = await verifyCredential({ credential: second, settings, maxAgeMs: 300_000 });
        assert.deepEqual([voter.user, voter.groups], ['carol', ['approvers']]);
        assert.equal(again.user, 'carol');
        assert.notEqual(voter.tokenId, again.tokenId, 'each vote carries a token of its own');
        assert.notEqual(voter.tokenId, claimsOf(saved.access_token).jti);
        // The refreshed token replaced the saved one, still private.
        const refreshed = JSON.parse(await readFile(file, 'utf8')) as CachedLogin;
        assert.equal(refreshed.access_token, second.kind === 'oidc' ? second.token : '');
        assert.equal((await stat(file)).mode & 0o777, 0o600);
      });
    });

    it('prefers a token from the environment, then client credentials, and falls back to an unproven name', async () => {
      const nowhere = path.join(home, 'empty');
      const token = await userToken('dave');
      await withEnv({ HOME: nowhere, XDG_CONFIG_HOME: nowhere, DEPLOY_AGENT_TOKEN: token }, async () => {
        assert.deepEqual(await credentialFor('vote'), { kind: 'oidc', token });
      });
      await withEnv(
        {
          HOME: nowhere,
          XDG_CONFIG_HOME: nowhere,
          DEPLOY_AGENT_CLIENT_ID: CI_CLIENT.id,
          DEPLOY_AGENT_CLIENT_SECRET: CI_CLIENT.secret,
          DEPLOY_AGENT_OIDC_ISSUER: keycloak.issuer(),
        },
        async () => {
          const identity = await verifyCredential({ credential: await credentialFor('request'), settings });
          assert.equal(identity.user, `service-account-${CI_CLIENT.id}`);
        },
      );
      await withEnv({ HOME: nowhere, XDG_CONFIG_HOME: nowhere, DEPLOY_AGENT_USER: 'dave' }, async () => {
        assert.deepEqual(await credentialFor('request'), { kind: 'insecure-dev', user: 'dave' });
      });
    });

    it('says what is wrong with client credentials, and that a provider did not answer (exit 4)', async () => {
      const nowhere = path.join(home, 'empty');
      await withEnv({ HOME: nowhere, XDG_CONFIG_HOME: nowhere, DEPLOY_AGENT_CLIENT_ID: CI_CLIENT.id }, async () => {
        await assert.rejects(credentialFor('request'), (error: unknown) => {
          assert.ok(error instanceof InvalidInput);
          assert.equal(
            error.message,
            'client credentials need DEPLOY_AGENT_CLIENT_SECRET and DEPLOY_AGENT_OIDC_ISSUER too',
          );
          return true;
        });
      });
      const vars = {
        HOME: nowhere,
        XDG_CONFIG_HOME: nowhere,
        DEPLOY_AGENT_CLIENT_ID: CI_CLIENT.id,
        DEPLOY_AGENT_CLIENT_SECRET: 'not-the-secret',
        DEPLOY_AGENT_OIDC_ISSUER: keycloak.issuer(),
      };
      await withEnv(vars, async () => {
        await assert.rejects(credentialFor('request'), (error: unknown) => {
          assert.ok(error instanceof InvalidInput);
          assert.match(error.message, /refused the client credentials of ci-pipeline \(unauthorized_client/);
          assert.ok(!error.message.includes('not-the-secret'));
          return true;
        });
      });
      const closed = `http://127.0.0.1:${await freePort()}/realms/deploy-agent`;
      await withEnv({ HOME: nowhere, XDG_CONFIG_HOME: nowhere }, async () => {
        await assert.rejects(loginCommand({ issuer: closed, output: { write: () => true } }), (error: unknown) => {
          assert.ok(error instanceof CliFailure);
          assert.equal(error.exitCode, EXIT.unreachable);
          assert.match(error.message, /is unreachable: .*ECONNREFUSED/);
          return true;
        });
        await assert.rejects(
          loginCommand({ output: { write: () => true } }),
          /pass --issuer URL or set DEPLOY_AGENT_OIDC_ISSUER/,
        );
      });
    });
  });
});
