// Keycloak for tests, and the test-side half of what a person or a CI system does with it: password-grant and
// client-credentials tokens, forged and expired tokens, and a "browser" that completes the device flow.
//
// stack/test.sh starts one Keycloak for the whole run and passes its URL in DEPLOY_AGENT_TEST_OIDC_URL; a test file
// run on its own starts a private one instead (20-40 s) and stops it when the file's process ends.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import {
  CI_PIPELINE,
  DEFAULT_REALM,
  issuerOf,
  type Keycloak,
  REALM_AUDIENCE,
  startKeycloak,
} from '../../stack/keycloak.js';
import { registerExitCleanup } from '../../stack/processes.js';

export const OIDC_URL_ENV = 'DEPLOY_AGENT_TEST_OIDC_URL';
/** The confidential client of the test realm (stack/keycloak/realm.json) and its fixed secret. */
export const CI_CLIENT = { id: CI_PIPELINE.clientId, secret: CI_PIPELINE.secret };
/** The audience the test realm's deploy-agent clients put into their tokens. */
export const AUDIENCE = REALM_AUDIENCE;

export interface OidcProvider {
  url: string;
  issuer: (realm?: string) => string;
}

let provider: Promise<OidcProvider> | undefined;

export function useKeycloak(): Promise<OidcProvider> {
  provider ??= connect();
  return provider;
}

async function connect(): Promise<OidcProvider> {
  const shared = process.env[OIDC_URL_ENV];
  if (shared) {
    const url = shared.replace(/\/+$/, '');
    return { url, issuer: (realm?: string) => issuerOf(url, realm) };
  }
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'keycloak-test-'));
  registerExitCleanup(() => rmSync(workDir, { recursive: true, force: true }));
  let keycloak: Keycloak;
  try {
    keycloak = await startKeycloak(workDir);
  } catch (error) {
    rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
  // Once the tests are done the event loop empties: a graceful stop then, and processes.ts's kill at exit otherwise.
  let stopped = false;
  process.on('beforeExit', () => {
    if (stopped) return;
    stopped = true;
    void keycloak.stop();
  });
  return { url: keycloak.url, issuer: keycloak.issuer };
}

export interface TokenOptions {
  realm?: string;
  /** Default deploy-agent-cli; `other-service` gives tokens for another audience, `short-lived` 2-second ones. */
  client?: string;
  /** Default: the user's name, as the test realm sets it. */
  password?: string;
}

export interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  expires_in: number;
}

/** A user's token by the password grant (direct access grants are on for the test realm's public clients). */
export async function userToken(user: string, options: TokenOptions = {}): Promise<string> {
  return (await userTokens(user, options)).access_token;
}

export async function userTokens(user: string, options: TokenOptions = {}): Promise<TokenResponse> {
  return tokenRequest(options.realm, {
    grant_type: 'password',
    client_id: options.client ?? 'deploy-agent-cli',
    username: user,
    password: options.password ?? user,
    scope: 'openid',
  });
}

/** A service account's token by the client-credentials grant, as a CI pipeline gets one. */
export async function clientCredentialsToken(
  options: { clientId?: string; secret?: string; realm?: string } = {},
): Promise<string> {
  const response = await tokenRequest(options.realm, {
    grant_type: 'client_credentials',
    client_id: options.clientId ?? CI_CLIENT.id,
    client_secret: options.secret ?? CI_CLIENT.secret,
  });
  return response.access_token;
}

async function tokenRequest(realm: string | undefined, form: Record<string, string>): Promise<TokenResponse> {
  const { issuer } = await useKeycloak();
  const response = await fetch(`${issuer(realm ?? DEFAULT_REALM)}/protocol/openid-connect/token`, {
    method: 'POST',
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await response.json()) as Partial<TokenResponse> & { error?: string; error_description?: string };
  if (!response.ok || !body.access_token)
    throw new Error(
      `token request (${form.grant_type}) refused: ${body.error ?? response.status} ${body.error_description ?? ''}`,
    );
  return body as TokenResponse;
}

/**
 * The same header and claims as a real token, signed by a key the provider never had. By default it names the
 * provider's key id, as an attacker copying a token would; `kid` names another one, `claims` change some.
 */
export async function forgedToken(
  realToken: string,
  options: { kid?: string; claims?: JWTPayload } = {},
): Promise<string> {
  const header = decodeProtectedHeader(realToken);
  const claims = { ...decodeJwt(realToken), ...options.claims };
  const alg = header.alg ?? 'RS256';
  const { privateKey } = await generateKeyPair(alg);
  return new SignJWT(claims).setProtectedHeader({ ...header, alg, kid: options.kid ?? header.kid }).sign(privateKey);
}

/**
 * A real token of the test realm's `short-lived` client (2-second access tokens), returned once it has expired by
 * more than `graceSeconds`: a verifier's clock tolerance must not let it through.
 */
export async function expiredToken(
  user: string,
  options: { graceSeconds?: number; realm?: string } = {},
): Promise<string> {
  const token = await userToken(user, { client: 'short-lived', realm: options.realm });
  const { exp } = decodeJwt(token);
  if (typeof exp !== 'number') throw new Error('the short-lived token has no exp claim');
  const waitMs = (exp + (options.graceSeconds ?? 6)) * 1000 - Date.now();
  if (waitMs > 30_000) throw new Error(`the short-lived token lives ${Math.round(waitMs / 1000)} s; expected 2`);
  if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
  return token;
}

/** Unverified claims of a token, for assertions. */
export function claimsOf(token: string): JWTPayload {
  return decodeJwt(token);
}

/**
 * What a person does in a browser with the device flow's link: open it, sign in, and grant access on the consent
 * page Keycloak always shows for this flow. Plain HTTP with a cookie jar, following redirects by hand.
 */
export async function completeDeviceLogin(verificationUri: string, user: string, password = user): Promise<void> {
  const browser = new Browser();
  let page = await browser.get(verificationUri);
  const steps: string[] = [];
  // Each page is one of: the code entry (pre-filled by the _complete link), login, consent, or the final answer.
  for (let step = 0; step < 6; step++) {
    const form = findForm(page.body);
    if (!form) break;
    const fields = { ...form.hidden };
    if ('username' in form.inputs || form.id === 'kc-form-login') {
      steps.push('login');
      Object.assign(fields, { username: user, password, credentialId: fields.credentialId ?? '' });
    } else if (form.submits.includes('accept')) {
      steps.push('consent');
      fields.accept = 'Yes';
    } else if ('device_user_code' in form.inputs) {
      steps.push('code');
    } else {
      break;
    }
    page = await browser.post(new URL(form.action, page.url).toString(), fields);
  }
  if (!/device login successful|successfully|you may now close/i.test(page.body))
    throw new Error(
      `device login did not complete after ${steps.join(', ') || 'no step'} (HTTP ${page.status} ${page.url}): ` +
        `${textOf(page.body).slice(0, 400)}`,
    );
}

interface Page {
  url: string;
  status: number;
  body: string;
}

class Browser {
  private readonly cookies = new Map<string, string>();

  get(url: string): Promise<Page> {
    return this.request(url, { method: 'GET' });
  }

  post(url: string, fields: Record<string, string>): Promise<Page> {
    return this.request(url, {
      method: 'POST',
      body: new URLSearchParams(fields).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
  }

  private async request(url: string, init: { method: string; body?: string; headers?: Record<string, string> }) {
    let current = url;
    let method = init.method;
    let body = init.body;
    let headers = init.headers ?? {};
    for (let hop = 0; hop < 10; hop++) {
      const response = await fetch(current, {
        method,
        body,
        redirect: 'manual',
        headers: { ...headers, cookie: this.cookieHeader(), accept: 'text/html' },
        signal: AbortSignal.timeout(15_000),
      });
      for (const cookie of response.headers.getSetCookie()) this.remember(cookie);
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.arrayBuffer();
        current = new URL(location, current).toString();
        method = 'GET';
        body = undefined;
        headers = {};
        continue;
      }
      return { url: current, status: response.status, body: await response.text() };
    }
    throw new Error(`more than 10 redirects from ${url}`);
  }

  private remember(setCookie: string): void {
    const [pair = ''] = setCookie.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) return;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/;\s*max-age=0/i.test(setCookie) || value === '') this.cookies.delete(name);
    else this.cookies.set(name, value);
  }

  private cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

interface Form {
  id: string;
  action: string;
  hidden: Record<string, string>;
  inputs: Record<string, string>;
  submits: string[];
}

/** The first form of a page with an action; enough HTML reading for Keycloak's own login theme. */
function findForm(html: string): Form | undefined {
  for (const match of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attributes = attributesOf(match[1] ?? '');
    if (!attributes.action) continue;
    const form: Form = {
      id: attributes.id ?? '',
      action: decodeEntities(attributes.action),
      hidden: {},
      inputs: {},
      submits: [],
    };
    for (const input of (match[2] ?? '').matchAll(/<(input|button)\b([^>]*)>/gi)) {
      const a = attributesOf(input[2] ?? '');
      if (!a.name) continue;
      const type = (a.type ?? (input[1]?.toLowerCase() === 'button' ? 'submit' : 'text')).toLowerCase();
      if (type === 'submit') form.submits.push(a.name);
      else if (type === 'hidden') form.hidden[a.name] = decodeEntities(a.value ?? '');
      else form.inputs[a.name] = decodeEntities(a.value ?? '');
    }
    return form;
  }
  return undefined;
}

function attributesOf(text: string): Record<string, string> {
  const result: Record<string, string> = {};
  for (const match of text.matchAll(/([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) {
    if (match[1]) result[match[1].toLowerCase()] = match[2] ?? match[3] ?? '';
  }
  return result;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&amp;/g, '&')
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>');
}

function textOf(html: string): string {
  return html
    .replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/gi, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}
