// The standalone Temporal Web UI server (provisioned by stack/provision-ui.sh) in front of a Temporal frontend, with
// OpenID Connect sign-in and a codec server that gets the signed-in user's access token. The dev server's built-in UI
// can do neither, so it can only ever show ciphertext of deploy-agent's payloads.
//
// Served over plain http on loopback (the UI server has no TLS of its own for browsers); its frontend connection can
// use TLS with a client certificate, for a production-shaped Temporal.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { freePort, type ManagedProcess, startAndWait } from './processes.js';
import { temporalUiServerPath } from './temporal.js';

const START_MS = 30_000;
const STOP_GRACE_MS = 5_000;

export interface TemporalUiSso {
  /** The provider's issuer; its discovery document is read from there. */
  issuer: string;
  /** A confidential client allowed the authorization code flow with `<ui url>/auth/sso/callback` as redirect. */
  clientId: string;
  clientSecret: string;
  /** Default openid, profile, email. */
  scopes?: string[];
}

export interface TemporalUiCodec {
  /** The codec server's URL. Must be https when the access token is passed: the UI sends none to http. */
  endpoint: string;
  /** Send the signed-in user's access token as `Authorization: Bearer` (needs `sso`). Default true with sso. */
  passAccessToken?: boolean;
}

export interface TemporalUiOptions {
  /** Configuration and log go here. */
  workDir: string;
  /** host:port of the Temporal frontend's gRPC. */
  frontendAddress: string;
  /** TLS to the frontend (mTLS when a client certificate is given); plaintext without it. */
  frontendTls?: { caFile: string; certFile?: string; keyFile?: string; serverName?: string };
  /** Default: a free port. Pick it beforehand when the codec server must allow the UI's origin. */
  port?: number;
  namespace?: string;
  sso?: TemporalUiSso;
  codec?: TemporalUiCodec;
}

export interface TemporalUi {
  /** http://127.0.0.1:PORT: also the origin the codec server must allow. */
  url: string;
  port: number;
  logFile: string;
  /** Holds the client secret: owner-only. */
  configFile: string;
  stop(): Promise<void>;
}

/** What a UI at `url` calls back to after sign-in: the redirect URI its OpenID client must allow. */
export function ssoCallbackUrl(url: string): string {
  return `${url.replace(/\/+$/, '')}/auth/sso/callback`;
}

export async function startTemporalUi(options: TemporalUiOptions): Promise<TemporalUi> {
  const port = options.port ?? (await freePort());
  const config = temporalUiConfig(options, port);
  const executable = temporalUiServerPath();
  const dir = path.resolve(options.workDir);
  const url = `http://127.0.0.1:${port}`;
  // The server reads <root>/<config>/<env>.yaml; one file, nothing of the package's defaults.
  const configDir = path.join(dir, 'config');
  await mkdir(configDir, { recursive: true });
  const configFile = path.join(configDir, 'deploy-agent.yaml');
  await writeFile(configFile, stringify(config), { mode: 0o600 });
  const server: ManagedProcess = await startAndWait({
    name: 'temporal-ui-server',
    command: executable,
    args: ['--root', dir, '--config', 'config', '--env', 'deploy-agent', 'start'],
    logFile: path.join(dir, 'ui-server.log'),
    cwd: dir,
    ready: {
      probe: async () => (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) })).ok,
      timeoutMs: START_MS,
    },
    stop: { graceMs: STOP_GRACE_MS },
  });
  return {
    url,
    port,
    logFile: server.logFile,
    configFile,
    stop: () => server.stop({ graceMs: STOP_GRACE_MS }),
  };
}

// The UI drops a token it may not send silently and shows ciphertext: refuse such a setup before starting it.
function checkCodec(options: TemporalUiOptions): void {
  const codec = options.codec;
  if (!codec) return;
  let endpoint: URL;
  try {
    endpoint = new URL(codec.endpoint);
  } catch {
    throw new Error(`temporal-ui: codec.endpoint ${codec.endpoint}: expected an http(s) URL`);
  }
  const passToken = codec.passAccessToken ?? Boolean(options.sso);
  if (passToken && !options.sso)
    throw new Error('temporal-ui: codec.passAccessToken needs sso: without sign-in there is no token to pass');
  if (passToken && endpoint.protocol !== 'https:')
    throw new Error(
      `temporal-ui: codec.endpoint ${codec.endpoint}: expected https, the UI passes the access token to https only`,
    );
}

/** The UI server's configuration file for a UI on 127.0.0.1:port; refuses a codec setup the UI would ignore. */
export function temporalUiConfig(options: TemporalUiOptions, port: number): Record<string, unknown> {
  checkCodec(options);
  const url = `http://127.0.0.1:${port}`;
  const tls = options.frontendTls;
  return {
    temporalGrpcAddress: options.frontendAddress,
    host: '127.0.0.1',
    port,
    enableUi: true,
    defaultNamespace: options.namespace ?? 'default',
    // No calls out to look for newer versions; nothing but the frontend, the provider and the codec.
    notifyOnNewVersion: false,
    refreshInterval: '0s',
    cors: {
      allowOrigins: [url],
      unsafeAllowAllOrigins: false,
      // The UI is served over http on loopback: a Secure CSRF cookie would never come back.
      cookieInsecure: true,
    },
    tls: tls
      ? {
          caFile: tls.caFile,
          certFile: tls.certFile ?? '',
          keyFile: tls.keyFile ?? '',
          enableHostVerification: true,
          serverName: tls.serverName ?? '',
        }
      : {},
    auth: options.sso
      ? {
          enabled: true,
          providers: [
            {
              label: 'sso',
              type: 'oidc',
              providerUrl: options.sso.issuer,
              issuerUrl: options.sso.issuer,
              clientId: options.sso.clientId,
              clientSecret: options.sso.clientSecret,
              scopes: options.sso.scopes ?? ['openid', 'profile', 'email'],
              callbackUrl: ssoCallbackUrl(url),
            },
          ],
        }
      : { enabled: false },
    codec: options.codec
      ? {
          endpoint: options.codec.endpoint,
          passAccessToken: options.codec.passAccessToken ?? Boolean(options.sso),
          includeCredentials: false,
        }
      : {},
    hideLogs: false,
  };
}
