/**
 * The worker's verification of who sent a request, vote or resolve: an OpenID Connect token checked against the
 * policy's provider (discovery, JWKS, issuer, audience, expiry, algorithm allowlist). Never logs or echoes a token.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from 'jose';
import { fail, unreachable } from '../domain/failures.js';
import type { Credential, Identity, IdentitySettings, OidcSettings } from '../domain/identity.js';

export interface VerifyRequest {
  credential: Credential;
  settings: IdentitySettings;
  /** A vote or resolve: the token must have been issued no longer ago than this. */
  maxAgeMs?: number;
}

// Clocks of the provider and the worker differ a little; a token is not judged on seconds.
const CLOCK_TOLERANCE_S = 5;

const keySets = new Map<string, Promise<ReturnType<typeof createRemoteJWKSet>>>();

/** The provider's keys, found through its discovery document, whose issuer must be the configured one. */
function keysOf(issuer: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
  let keys = keySets.get(issuer);
  if (!keys) {
    keys = discover(issuer);
    keySets.set(issuer, keys);
    keys.catch(() => keySets.delete(issuer));
  }
  return keys;
}

async function discover(issuer: string): Promise<ReturnType<typeof createRemoteJWKSet>> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  let document: { issuer?: unknown; jwks_uri?: unknown };
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`HTTP ${response.status} for ${url}`);
    document = (await response.json()) as typeof document;
  } catch (error) {
    throw unreachable(`OpenID provider ${issuer}`, error);
  }
  if (document.issuer !== issuer)
    throw fail('invalid', `the OpenID provider at ${issuer} names itself ${String(document.issuer)}: check identity.oidc.issuer`);
  if (typeof document.jwks_uri !== 'string') throw fail('invalid', `the OpenID provider at ${issuer} names no jwks_uri`);
  return createRemoteJWKSet(new URL(document.jwks_uri), { timeoutDuration: 10_000 });
}

export async function verifyCredential({ credential, settings, maxAgeMs }: VerifyRequest): Promise<Identity> {
  if (credential.kind === 'insecure-dev') {
    if (!settings.insecureDevMode)
      throw fail(
        'forbidden',
        `an unproven name (${credential.user.slice(0, 100)}) is not accepted by this worker: sign in with ` +
          '`deploy-agent login` or present a token (DEPLOY_AGENT_TOKEN)',
      );
    return { user: credential.user, groups: [], proof: 'insecure-dev' };
  }
  if (!settings.oidc) throw fail('forbidden', 'this worker verifies no tokens: its policy names no OpenID provider');
  return verifyToken(credential.token, settings.oidc, maxAgeMs);
}

async function verifyToken(token: string, oidc: OidcSettings, maxAgeMs?: number): Promise<Identity> {
  const keys = await keysOf(oidc.issuer);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: oidc.issuer,
      audience: oidc.audience,
      algorithms: oidc.algorithms,
      clockTolerance: CLOCK_TOLERANCE_S,
      ...(maxAgeMs !== undefined ? { maxTokenAge: `${Math.floor(maxAgeMs / 1000)}s` } : {}),
    }));
  } catch (error) {
    throw refusal(error, oidc, maxAgeMs);
  }
  const named = payload[oidc.userClaim] ?? payload.sub;
  if (typeof named !== 'string' || named === '') throw fail('forbidden', `the token names no user (${oidc.userClaim}, sub)`);
  const groups = payload[oidc.groupsClaim];
  return {
    user: named,
    groups: Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : [],
    proof: 'oidc',
    issuer: payload.iss,
    tokenId: typeof payload.jti === 'string' ? payload.jti : undefined,
    issuedAt: typeof payload.iat === 'number' ? new Date(payload.iat * 1000).toISOString() : undefined,
  };
}

/** Why a token is refused, in words a requester can act on; the token itself is never part of it. */
function refusal(error: unknown, oidc: OidcSettings, maxAgeMs?: number): Error {
  if (error instanceof errors.JWTExpired) return fail('forbidden', 'the token has expired: sign in again');
  if (error instanceof errors.JWTClaimValidationFailed) {
    const claim = error.claim;
    if (claim === 'iss') return fail('forbidden', `the token was issued by another provider, expected ${oidc.issuer}`);
    if (claim === 'aud') return fail('forbidden', `the token is not meant for this worker: expected audience ${oidc.audience}`);
    if (claim === 'iat' && maxAgeMs !== undefined)
      return fail('forbidden', `the token is older than ${Math.round(maxAgeMs / 1000)} s: a vote needs a fresh token`);
    return fail('forbidden', `the token's ${claim} claim is not acceptable: ${error.reason}`);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return fail('forbidden', 'the token signature is invalid: it was not signed by the provider');
  if (error instanceof errors.JOSEAlgNotAllowed)
    return fail('forbidden', `the token is signed with an algorithm this worker does not accept (${oidc.algorithms.join(', ')})`);
  if (error instanceof errors.JWKSNoMatchingKey)
    return fail('forbidden', 'the token is signed with a key the provider does not publish');
  if (error instanceof errors.JWKSTimeout || (error as { code?: string }).code === 'ERR_JWKS_TIMEOUT')
    return unreachable(`OpenID provider ${oidc.issuer}`, error);
  if (error instanceof errors.JOSEError) return fail('forbidden', `the token is not valid: ${error.code}`);
  return unreachable(`OpenID provider ${oidc.issuer}`, error);
}
