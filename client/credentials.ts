/**
 * The proof the CLI sends with every request, vote and resolve: a token from the environment (CI's OIDC token), a
 * client-credentials token, the token `deploy-agent login` cached, or, for a dev worker only, a bare name.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { CliFailure, EXIT, InvalidInput, messageOf } from '../domain/failures.js';
import type { Credential } from '../domain/identity.js';

export type Purpose = 'request' | 'vote';

export interface CachedLogin {
  issuer: string;
  clientId: string;
  access_token: string;
  refresh_token?: string;
  /** Seconds since the epoch. */
  expires_at: number;
}

export function credentialsFile(): string {
  const base = process.env.XDG_CONFIG_HOME ?? join(homedir(), '.config');
  return join(base, 'deploy-agent', 'credentials.json');
}

export async function credentialFor(purpose: Purpose): Promise<Credential> {
  const env = process.env;
  if (env.DEPLOY_AGENT_TOKEN) return oidc(env.DEPLOY_AGENT_TOKEN);
  if (env.DEPLOY_AGENT_TOKEN_FILE) {
    const text = await readFile(env.DEPLOY_AGENT_TOKEN_FILE, 'utf8').catch((error: unknown) => {
      throw new InvalidInput(`DEPLOY_AGENT_TOKEN_FILE ${env.DEPLOY_AGENT_TOKEN_FILE} cannot be read: ${messageOf(error)}`);
    });
    return oidc(text.trim());
  }
  if (env.DEPLOY_AGENT_CLIENT_ID && env.DEPLOY_AGENT_CLIENT_SECRET && env.DEPLOY_AGENT_OIDC_ISSUER) {
    const endpoint = await tokenEndpoint(env.DEPLOY_AGENT_OIDC_ISSUER);
    const answer = await tokenRequest(endpoint, {
      grant_type: 'client_credentials',
      client_id: env.DEPLOY_AGENT_CLIENT_ID,
      client_secret: env.DEPLOY_AGENT_CLIENT_SECRET,
    });
    return oidc(answer.access_token);
  }
  const cached = await readLogin();
  if (cached) return oidc(await freshToken(cached, purpose));
  return { kind: 'insecure-dev', user: env.DEPLOY_AGENT_USER ?? userInfo().username };
}

function oidc(token: string): Credential {
  return { kind: 'oidc', token };
}

async function readLogin(): Promise<CachedLogin | undefined> {
  try {
    return JSON.parse(await readFile(credentialsFile(), 'utf8')) as CachedLogin;
  } catch {
    return undefined;
  }
}

export async function saveLogin(login: CachedLogin): Promise<string> {
  const file = credentialsFile();
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, JSON.stringify(login, null, 2), { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

/** A vote always gets a newly issued token (fresh, with its own id); a request refreshes only an expiring one. */
async function freshToken(login: CachedLogin, purpose: Purpose): Promise<string> {
  const expiring = login.expires_at * 1000 < Date.now() + 30_000;
  if (purpose === 'request' && !expiring) return login.access_token;
  if (!login.refresh_token)
    throw new InvalidInput('the cached login cannot be refreshed: run `deploy-agent login` again');
  const answer = await tokenRequest(await tokenEndpoint(login.issuer), {
    grant_type: 'refresh_token',
    client_id: login.clientId,
    refresh_token: login.refresh_token,
  }).catch((error: unknown) => {
    if (error instanceof CliFailure && error.exitCode === EXIT.unreachable) throw error;
    throw new InvalidInput(`the cached login has expired (${messageOf(error)}): run \`deploy-agent login\` again`);
  });
  await saveLogin({ ...login, ...tokenFields(answer) });
  return answer.access_token;
}

export interface TokenAnswer {
  access_token: string;
  refresh_token?: string;
  expires_in?: number;
}

export function tokenFields(answer: TokenAnswer): Pick<CachedLogin, 'access_token' | 'refresh_token' | 'expires_at'> {
  return {
    access_token: answer.access_token,
    refresh_token: answer.refresh_token,
    expires_at: Math.floor(Date.now() / 1000) + (answer.expires_in ?? 300),
  };
}

export async function discovery(issuer: string): Promise<Record<string, unknown>> {
  const url = `${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) }).catch((error: unknown) => {
    throw new CliFailure(`the OpenID provider ${issuer} is unreachable: ${messageOf(error)}`, EXIT.unreachable);
  });
  if (!response.ok) throw new InvalidInput(`${url} answered HTTP ${response.status}: is ${issuer} an OpenID issuer?`);
  return (await response.json()) as Record<string, unknown>;
}

async function tokenEndpoint(issuer: string): Promise<string> {
  const endpoint = (await discovery(issuer)).token_endpoint;
  if (typeof endpoint !== 'string') throw new InvalidInput(`the OpenID provider ${issuer} names no token endpoint`);
  return endpoint;
}

/** A token endpoint's answer, or its OAuth error as invalid input (the secret is never part of the message). */
export async function tokenRequest(endpoint: string, form: Record<string, string>): Promise<TokenAnswer> {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(10_000),
  }).catch((error: unknown) => {
    throw new CliFailure(`the token endpoint ${endpoint} is unreachable: ${messageOf(error)}`, EXIT.unreachable);
  });
  const body = (await response.json().catch(() => ({}))) as Partial<TokenAnswer> & {
    error?: string;
    error_description?: string;
  };
  if (!response.ok || !body.access_token)
    throw new InvalidInput(
      `the token endpoint refused: ${body.error ?? `HTTP ${response.status}`}${body.error_description ? ` (${body.error_description})` : ''}`,
    );
  return body as TokenAnswer;
}
