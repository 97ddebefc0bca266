/**
 * The proof the CLI sends with every request, vote and resolve, first found wins:
 *   1. a raw token: DEPLOY_AGENT_TOKEN, or the file DEPLOY_AGENT_TOKEN_FILE (a CI system's OIDC token, say);
 *   2. a client-credentials token: DEPLOY_AGENT_CLIENT_ID + DEPLOY_AGENT_CLIENT_SECRET + DEPLOY_AGENT_OIDC_ISSUER;
 *   3. the login `deploy-agent login` cached, refreshed when it expires and always for a vote;
 *   4. a bare name, DEPLOY_AGENT_USER or the OS user's: only a worker in insecure dev mode accepts it.
 * Tokens and secrets never appear in a message.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import path from 'node:path';
import { CliFailure, EXIT, InvalidInput, messageOf } from '../domain/failures.js';
import type { Credential } from '../domain/identity.js';

/** A vote or resolve needs a freshly issued token; a request does not. */
export type CredentialPurpose = 'request' | 'vote';

/** What `deploy-agent login` keeps between runs. */
export interface CachedLogin {
  issuer: string;
  clientId: string;
  access_token: string;
  refresh_token?: string;
  /** Seconds since the epoch, like a token's exp. */
  expires_at: number;
}

/** The provider did not answer: nothing was sent to Temporal (exit 4). */
export class ProviderUnreachable extends CliFailure {
  constructor(what: string, cause: unknown) {
    super(`${what} is unreachable: ${messageOf(cause)}`, EXIT.unreachable);
  }
}

export const DEFAULT_CLIENT_ID = 'deploy-agent-cli';
// The credential schema's bounds: a value outside them cannot be a token and the workflow would refuse it anyway.
const MIN_TOKEN_LENGTH = 16;
const MAX_TOKEN_LENGTH = 16_384;
// A token that expires within this is refreshed first: it must still be valid when the worker verifies it.
const EXPIRY_MARGIN_S = 30;
const HTTP_TIMEOUT_MS = 15_000;

export function credentialsFile(): string {
  const base = process.env.XDG_CONFIG_HOME || path.join(homedir(), '.config');
  return path.join(base, 'deploy-agent', 'credentials.json');
}

export async function credentialFor(purpose: CredentialPurpose): Promise<Credential> {
  const env = process.env;
  if (env.DEPLOY_AGENT_TOKEN) return oidc(env.DEPLOY_AGENT_TOKEN.trim(), 'DEPLOY_AGENT_TOKEN');
  if (env.DEPLOY_AGENT_TOKEN_FILE)
    return oidc(await readTokenFile(env.DEPLOY_AGENT_TOKEN_FILE), 'DEPLOY_AGENT_TOKEN_FILE');
  const client = clientCredentialsFromEnv();
  if (client) return oidc(await clientCredentialsToken(client), 'the client-credentials token');
  const login = await readCachedLogin();
  if (login) return oidc(await freshToken(login, purpose), credentialsFile());
  return { kind: 'insecure-dev', user: env.DEPLOY_AGENT_USER || userInfo().username };
}

function oidc(token: string, source: string): Credential {
  if (token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH || /\s/.test(token))
    throw new InvalidInput(`${source} does not hold a token (${token.length} characters)`);
  return { kind: 'oidc', token };
}

async function readTokenFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new InvalidInput(`DEPLOY_AGENT_TOKEN_FILE ${file} cannot be read: ${messageOf(error)}`);
  }
  if (text.trim() === '') throw new InvalidInput(`DEPLOY_AGENT_TOKEN_FILE ${file} is empty`);
  return text.trim();
}

interface ClientCredentials {
  issuer: string;
  clientId: string;
  secret: string;
}

function clientCredentialsFromEnv(): ClientCredentials | undefined {
  const { DEPLOY_AGENT_CLIENT_ID: clientId, DEPLOY_AGENT_CLIENT_SECRET: secret } = process.env;
  const issuer = process.env.DEPLOY_AGENT_OIDC_ISSUER;
  if (!clientId && !secret) return undefined;
  // Half a configuration falling through to another proof would act as someone else without saying so.
  const missing = [
    ['DEPLOY_AGENT_CLIENT_ID', clientId],
    ['DEPLOY_AGENT_CLIENT_SECRET', secret],
    ['DEPLOY_AGENT_OIDC_ISSUER', issuer],
  ]
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (missing.length > 0 || !clientId || !secret || !issuer)
    throw new InvalidInput(`client credentials need ${missing.join(' and ')} too`);
  return { issuer, clientId, secret };
}

async function clientCredentialsToken({ issuer, clientId, secret }: ClientCredentials): Promise<string> {
  const { token_endpoint } = await discover(issuer);
  // client_secret_basic, the method every provider must support (RFC 6749 2.3.1: each part form-encoded first).
  const basic = Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`).toString('base64');
  try {
    const answer = await tokenRequest(
      token_endpoint,
      { grant_type: 'client_credentials' },
      { authorization: `Basic ${basic}` },
    );
    return answer.access_token;
  } catch (error) {
    if (error instanceof TokenRefused)
      throw new InvalidInput(`the OpenID provider refused the client credentials of ${clientId} (${error.message})`);
    throw error;
  }
}

function formEncode(text: string): string {
  return new URLSearchParams({ v: text }).toString().slice(2);
}

export async function readCachedLogin(): Promise<CachedLogin | undefined> {
  const file = credentialsFile();
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new InvalidInput(`the saved login ${file} cannot be read: ${messageOf(error)}`);
  }
  let login: Partial<CachedLogin>;
  try {
    login = JSON.parse(text) as Partial<CachedLogin>;
  } catch {
    throw new InvalidInput(`the saved login ${file} is not JSON: run \`deploy-agent login\` again`);
  }
  if (
    typeof login.issuer !== 'string' ||
    typeof login.clientId !== 'string' ||
    typeof login.access_token !== 'string' ||
    typeof login.expires_at !== 'number'
  )
    throw new InvalidInput(`the saved login ${file} is incomplete: run \`deploy-agent login\` again`);
  const wanted = process.env.DEPLOY_AGENT_OIDC_ISSUER;
  if (wanted && wanted !== login.issuer)
    throw new InvalidInput(
      `the saved login is for ${login.issuer}, but DEPLOY_AGENT_OIDC_ISSUER is ${wanted}: run \`deploy-agent login\``,
    );
  return login as CachedLogin;
}

/** Readable by its owner only, in a directory only its owner can enter; replaced whole, never half written. */
export async function saveLogin(login: CachedLogin): Promise<string> {
  const file = credentialsFile();
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir leaves an existing directory's mode alone.
  await chmod(dir, 0o700);
  const temporary = path.join(dir, `.credentials-${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temporary, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw new InvalidInput(`cannot save the login in ${file}: ${messageOf(error)}`);
  }
  return file;
}

/** A vote always gets a newly issued token (fresh, with an id of its own); a request refreshes an expiring one only. */
async function freshToken(login: CachedLogin, purpose: CredentialPurpose): Promise<string> {
  const expiring = login.expires_at - EXPIRY_MARGIN_S <= Date.now() / 1000;
  if (purpose === 'request' && !expiring) return login.access_token;
  if (!login.refresh_token)
    throw new InvalidInput(
      `the saved login ${expiring ? 'has expired' : 'cannot give a fresh token'}: run \`deploy-agent login\` again`,
    );
  const { token_endpoint } = await discover(login.issuer);
  let answer: TokenAnswer;
  try {
    answer = await tokenRequest(token_endpoint, {
      grant_type: 'refresh_token',
      client_id: login.clientId,
      refresh_token: login.refresh_token,
    });
  } catch (error) {
    if (error instanceof TokenRefused)
      throw new InvalidInput(
        `the saved login can no longer be refreshed (${error.message}): run \`deploy-agent login\``,
      );
    throw error;
  }
  await saveLogin({ ...login, ...loginFields(answer) });
  return answer.access_token;
}

export interface TokenAnswer {
  access_token: string;
  refresh_token?: string;
  expires_in?: number;
}

/** The part of a saved login a token answer renews; a provider that rotates no refresh token keeps the old one. */
export function loginFields(
  answer: TokenAnswer,
): Pick<CachedLogin, 'access_token' | 'expires_at'> & Partial<Pick<CachedLogin, 'refresh_token'>> {
  return {
    access_token: answer.access_token,
    ...(answer.refresh_token ? { refresh_token: answer.refresh_token } : {}),
    expires_at: Math.floor(Date.now() / 1000) + (answer.expires_in ?? 300),
  };
}

export interface ProviderMetadata {
  issuer: string;
  token_endpoint: string;
  device_authorization_endpoint?: string;
}

/** The provider's discovery document; its issuer must be the one asked for, as the worker requires too. */
export async function discover(issuer: string): Promise<ProviderMetadata> {
  let base: URL;
  try {
    base = new URL(issuer);
  } catch {
    throw new InvalidInput(`the OpenID issuer ${issuer} is not a URL`);
  }
  if (base.protocol !== 'https:' && base.protocol !== 'http:')
    throw new InvalidInput(`the OpenID issuer ${issuer} is not an http(s) URL`);
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const { status, body } = await call(url, { method: 'GET' }, `the OpenID provider ${issuer}`);
  if (status >= 500) throw new ProviderUnreachable(`the OpenID provider ${issuer}`, new Error(`HTTP ${status}`));
  if (status !== 200 || typeof body !== 'object' || body === null)
    throw new InvalidInput(`${url} answered HTTP ${status}, not a discovery document: is ${issuer} an OpenID issuer?`);
  const document = body as Partial<Record<keyof ProviderMetadata, unknown>>;
  if (document.issuer !== issuer)
    throw new InvalidInput(
      `the provider at ${issuer} names itself ${String(document.issuer)}: use that issuer instead`,
    );
  if (typeof document.token_endpoint !== 'string')
    throw new InvalidInput(`the OpenID provider ${issuer} names no token endpoint`);
  return {
    issuer,
    token_endpoint: document.token_endpoint,
    ...(typeof document.device_authorization_endpoint === 'string'
      ? { device_authorization_endpoint: document.device_authorization_endpoint }
      : {}),
  };
}

/** An OAuth error answer (RFC 6749 5.2): its `error` code, to act on, and a message that quotes no secret. */
export class TokenRefused extends Error {
  constructor(
    readonly error: string,
    description: string | undefined,
  ) {
    super(description ? `${error}: ${description}` : error);
    this.name = new.target.name;
  }
}

/** A token endpoint's answer; an OAuth error is a TokenRefused for the caller to judge. */
export async function tokenRequest(
  endpoint: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<TokenAnswer> {
  const body = await postForm(endpoint, form, headers);
  if (typeof body.access_token !== 'string')
    throw new TokenRefused('invalid_response', 'the answer holds no access_token');
  return body as unknown as TokenAnswer;
}

/** POSTs a form to one of the provider's endpoints: its JSON answer, or a TokenRefused with its OAuth error. */
export async function postForm(
  endpoint: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  const { status, body } = await call(
    endpoint,
    {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(form).toString(),
    },
    `the OpenID provider's endpoint ${endpoint}`,
  );
  const answer = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  if (status >= 200 && status < 300) return answer;
  if (typeof answer.error === 'string')
    throw new TokenRefused(
      answer.error,
      typeof answer.error_description === 'string' ? answer.error_description : undefined,
    );
  if (status >= 500)
    throw new ProviderUnreachable(`the OpenID provider's endpoint ${endpoint}`, new Error(`HTTP ${status}`));
  throw new TokenRefused(`http_${status}`, `${endpoint} answered HTTP ${status}`);
}

async function call(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: string },
  what: string,
): Promise<{ status: number; body: unknown }> {
  try {
    const response = await fetch(url, {
      ...init,
      headers: { accept: 'application/json', ...init.headers },
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const text = await response.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    return { status: response.status, body };
  } catch (error) {
    throw new ProviderUnreachable(what, (error as { cause?: unknown }).cause ?? error);
  }
}
