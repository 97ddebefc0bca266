/**
 * The worker's verification of who sent a request, vote or resolve: an OpenID Connect token checked against the
 * policy's provider (discovery, JWKS, issuer, audience, expiry, age, algorithm allowlist), or a bare name when the
 * policy turns on the insecure development mode. The token itself never appears in an error or a log line: it would
 * let whoever reads them act as its owner until it expires.
 */
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { formatDuration } from '../domain/duration.js';
import { fail, messageOf, unreachable } from '../domain/failures.js';
import {
  credentialSchema,
  type Credential,
  type Identity,
  type IdentitySettings,
  type OidcSettings,
} from '../domain/identity.js';

export interface VerifyCredentialInput {
  /** Checked again here: it arrives from whoever sent a request or a vote. */
  credential: Credential;
  settings: IdentitySettings;
  /** A vote or resolve: the token must have been issued no longer ago than this. */
  maxAgeMs?: number;
}

// Clocks of the provider and the worker differ a little; a few seconds must not decide whether a token is valid.
const CLOCK_TOLERANCE_S = 5;
const HTTP_TIMEOUT_MS = 10_000;
// The discovery document hardly ever changes, but a provider that moves its JWKS must not need a worker restart.
const DISCOVERY_TTL_MS = 3_600_000;
const DEFAULT_ALGORITHMS = ['RS256', 'ES256'];
// Claims are the sender's text until verified: quoted, and cut short, when a refusal names them.
const MAX_QUOTED = 200;

/** Who sent a credential, or a `Forbidden` failure saying why not; an unreachable provider is retryable. */
export async function verifyCredential({ credential, settings, maxAgeMs }: VerifyCredentialInput): Promise<Identity> {
  const parsed = credentialSchema.safeParse(credential);
  if (!parsed.success)
    throw fail('forbidden', 'not a credential: expected {kind: "oidc", token} or {kind: "insecure-dev", user}');
  const proof = parsed.data;
  if (proof.kind === 'insecure-dev') {
    if (!settings.insecureDevMode)
      throw fail(
        'forbidden',
        `insecure dev identities are not accepted by this worker (${quote(proof.user)} is an unproven name): sign in ` +
          'with `deploy-agent login`, or give the CLI a token from the OpenID provider (DEPLOY_AGENT_TOKEN)',
      );
    return { user: proof.user, groups: [], proof: 'insecure-dev' };
  }
  if (!settings.oidc)
    throw fail(
      'forbidden',
      'this worker verifies no tokens: its platform policy names no OpenID provider (identity.oidc), only the ' +
        'insecure dev mode',
    );
  return verifyToken(proof.token, withDefaults(settings.oidc), maxAgeMs);
}

/** Settings straight from a workflow may lack what the policy schema fills in. */
function withDefaults(oidc: OidcSettings): OidcSettings {
  return {
    ...oidc,
    algorithms: oidc.algorithms?.length ? oidc.algorithms : (DEFAULT_ALGORITHMS as OidcSettings['algorithms']),
    userClaim: oidc.userClaim || 'preferred_username',
    groupsClaim: oidc.groupsClaim || 'groups',
  };
}

async function verifyToken(token: string, oidc: OidcSettings, maxAgeMs: number | undefined): Promise<Identity> {
  // Read before any key is fetched, to name the reason a foreign token is refused; nothing read here is trusted.
  let claimed: JWTPayload;
  let alg: unknown;
  try {
    claimed = decodeJwt(token);
    alg = decodeProtectedHeader(token).alg;
  } catch {
    throw fail('forbidden', 'not a token: the credential is not a signed JWT (header.payload.signature)');
  }
  if (claimed.iss !== oidc.issuer)
    throw fail(
      'forbidden',
      `token issued by ${claimed.iss === undefined ? 'no issuer' : quote(claimed.iss)}, expected ${oidc.issuer}`,
    );
  if (typeof alg !== 'string' || !oidc.algorithms.includes(alg as OidcSettings['algorithms'][number]))
    throw fail(
      'forbidden',
      `token signed with ${quote(alg)}; this worker accepts only ${oidc.algorithms.join(', ')} (identity.oidc.algorithms)`,
    );

  const keys = await keysOf(oidc.issuer);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, keys, {
      issuer: oidc.issuer,
      audience: oidc.audience,
      algorithms: oidc.algorithms,
      clockTolerance: CLOCK_TOLERANCE_S,
      requiredClaims: ['exp', 'iat'],
      ...(maxAgeMs !== undefined ? { maxTokenAge: maxAgeMs / 1000 } : {}),
    }));
  } catch (error) {
    throw refusal(error, oidc, claimed, maxAgeMs);
  }

  const named = payload[oidc.userClaim];
  const user = typeof named === 'string' && named !== '' ? named : payload.sub;
  if (!user) throw fail('forbidden', `token names no user: it has neither a ${oidc.userClaim} nor a sub claim`);
  const groups = payload[oidc.groupsClaim];
  return {
    user,
    groups: Array.isArray(groups) && groups.every((g) => typeof g === 'string') ? groups : [],
    proof: 'oidc',
    issuer: oidc.issuer,
    tokenId: typeof payload.jti === 'string' ? payload.jti : undefined,
    issuedAt: typeof payload.iat === 'number' ? new Date(payload.iat * 1000).toISOString() : undefined,
  };
}

/** Why a token was refused, in words its sender can act on. */
function refusal(error: unknown, oidc: OidcSettings, claimed: JWTPayload, maxAgeMs: number | undefined): Error {
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return fail('forbidden', `token signature invalid: it was not signed by ${oidc.issuer}`);
  if (error instanceof errors.JWKSNoMatchingKey)
    return fail('forbidden', `token signature invalid: signed with a key ${oidc.issuer} does not publish`);
  if (error instanceof errors.JOSEAlgNotAllowed)
    return fail('forbidden', `token signed with an algorithm outside ${oidc.algorithms.join(', ')}`);
  if (error instanceof errors.JWTExpired) {
    if (error.claim === 'iat' && maxAgeMs !== undefined)
      return fail(
        'forbidden',
        `token issued at ${timeOf(claimed.iat)}, more than ${formatDuration(maxAgeMs)} ago: a vote or resolve needs ` +
          'a freshly issued token',
      );
    return fail('forbidden', `token expired at ${timeOf(claimed.exp)}: sign in again for a new one`);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'aud')
      return fail(
        'forbidden',
        `token audience ${claimed.aud === undefined ? '(none)' : quote(claimed.aud)}, expected ${oidc.audience}: it ` +
          'was issued for another service',
      );
    if (error.reason === 'missing') return fail('forbidden', `token has no ${error.claim} claim`);
    if (error.claim === 'iss')
      return fail('forbidden', `token issued by ${quote(claimed.iss)}, expected ${oidc.issuer}`);
    if (error.claim === 'nbf') return fail('forbidden', `token not valid before ${timeOf(claimed.nbf)}`);
    if (error.claim === 'iat') return fail('forbidden', `token issued in the future (${timeOf(claimed.iat)})`);
    return fail('forbidden', `token refused: its ${error.claim} claim failed the check (${error.reason})`);
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid)
    return fail('forbidden', `not a token: ${error.message}`);
  // The key set could not be fetched or read: the provider's fault, and perhaps over in a moment.
  if (
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid ||
    !(error instanceof errors.JOSEError)
  )
    return unreachable(`the OpenID provider ${oidc.issuer}`, rootCause(error));
  if (error.code === 'ERR_JOSE_GENERIC') return unreachable(`the OpenID provider ${oidc.issuer}`, error);
  return fail('forbidden', `token refused: ${error.message}`);
}

interface KeySet {
  keys: JWTVerifyGetKey;
  discoveredAt: number;
}

// Per issuer: jose's key set caches the keys and fetches them again when a token names an unknown key id.
const keySets = new Map<string, Promise<KeySet>>();

async function keysOf(issuer: string): Promise<JWTVerifyGetKey> {
  const known = keySets.get(issuer);
  if (known) {
    const set = await known.catch(() => undefined);
    if (set && Date.now() - set.discoveredAt < DISCOVERY_TTL_MS) return set.keys;
    if (keySets.get(issuer) === known) keySets.delete(issuer);
  }
  let pending = keySets.get(issuer);
  if (!pending) {
    pending = discover(issuer);
    keySets.set(issuer, pending);
    // A failure is not remembered: the next verification asks the provider again.
    pending.catch(() => {
      if (keySets.get(issuer) === pending) keySets.delete(issuer);
    });
  }
  return (await pending).keys;
}

async function discover(issuer: string): Promise<KeySet> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  } catch (error) {
    throw unreachable(`the OpenID provider ${issuer}`, rootCause(error));
  }
  if (response.status >= 500 || response.status === 429)
    throw unreachable(`the OpenID provider ${issuer}`, new Error(`HTTP ${response.status} for ${url}`));
  if (!response.ok)
    throw fail(
      'forbidden',
      `tokens cannot be verified: ${url} answered HTTP ${response.status} (is identity.oidc.issuer an OpenID issuer?)`,
    );
  let document: { issuer?: unknown; jwks_uri?: unknown };
  try {
    document = (await response.json()) as typeof document;
  } catch (error) {
    throw unreachable(
      `the OpenID provider ${issuer}`,
      new Error(`its discovery document is not JSON: ${messageOf(error)}`),
    );
  }
  // A provider that names another issuer signs tokens no worker could match against its policy (OpenID Discovery 4.3).
  if (document.issuer !== issuer)
    throw fail(
      'forbidden',
      `tokens cannot be verified: the provider at ${url} names itself ${quote(document.issuer)}, not ${issuer} ` +
        '(identity.oidc.issuer must be exactly the issuer its tokens carry)',
    );
  if (typeof document.jwks_uri !== 'string')
    throw fail('forbidden', `tokens cannot be verified: the discovery document of ${issuer} names no jwks_uri`);
  let jwksUri: URL;
  try {
    jwksUri = new URL(document.jwks_uri);
  } catch {
    throw fail('forbidden', `tokens cannot be verified: the jwks_uri of ${issuer} is not a URL`);
  }
  return { keys: createRemoteJWKSet(jwksUri, { timeoutDuration: HTTP_TIMEOUT_MS }), discoveredAt: Date.now() };
}

/** fetch says only "fetch failed"; the socket's error (ECONNREFUSED, a timeout) is in its cause. */
function rootCause(error: unknown): unknown {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  return cause instanceof Error ? cause : error;
}

function timeOf(seconds: unknown): string {
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : '(unknown)';
}

function quote(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > MAX_QUOTED ? `${text.slice(0, MAX_QUOTED)}…` : text;
}
