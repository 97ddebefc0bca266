/**
 * The CLI's payload codec when it holds no key ring: the codec server (`deploy-agent codec-server`) encodes and
 * decodes for it, over Temporal's remote codec protocol, with the caller's own OpenID token. The keys stay on the
 * workers and the codec server; the policy's `payloadReaders` decide who may read, and anyone verified may encode
 * (start a deployment). Failures name the codec server: a refusal is exit 2, a server that does not answer exit 4.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import { dataConverter, payloadConverterPath } from '../codec/data-converter.js';
import { keyRingFromEnv } from '../keys/key-ring.js';
import { payloadsFromBody, payloadToJson } from '../codec/payload-json.js';
import { CliFailure, EXIT, InvalidInput, messageOf } from '../domain/failures.js';
import { credentialFor } from './credentials.js';

const TIMEOUT_MS = 30_000;
// A token is fetched again when it expires within this: it must still be valid when the codec server verifies it.
const EXPIRY_MARGIN_S = 30;
// A token without a readable expiry is used for this long at most.
const UNKNOWN_EXPIRY_S = 60;

/**
 * The data converter of a CLI command: the local key ring when one is configured (it wins over a codec endpoint:
 * whoever holds the keys needs no server to use them), else the codec server at DEPLOY_AGENT_CODEC_ENDPOINT, else
 * invalid input naming both ways.
 */
export function clientDataConverter(namespace: string, env: NodeJS.ProcessEnv = process.env): DataConverter {
  if (env.DEPLOY_AGENT_KEYS_FILE || env.DEPLOY_AGENT_KEYS) return dataConverter(keyRingFromEnv(env));
  if (env.DEPLOY_AGENT_CODEC_ENDPOINT)
    return { payloadConverterPath, payloadCodecs: [new RemoteCodec(remoteCodecSettings(namespace, env))] };
  throw new InvalidInput(
    'no keys: set DEPLOY_AGENT_KEYS_FILE to a key file ({current: ID, keys: {ID: base64 of 32 bytes}}) or ' +
      'DEPLOY_AGENT_KEYS to its content, or DEPLOY_AGENT_CODEC_ENDPOINT to the URL of the codec server ' +
      '(deploy-agent codec-server), which encodes and decodes payloads for your token',
  );
}

export interface RemoteCodecSettings {
  /** The codec server's base URL; /encode and /decode are appended. */
  endpoint: string;
  namespace: string;
  /** The CA certificates (PEM) an https endpoint's certificate must chain to, instead of the system's. */
  ca?: Buffer;
  /** Where `ca` came from, for messages. */
  caFile?: string;
  /** The bearer token for each call. */
  token: () => Promise<string>;
  timeoutMs?: number;
}

/** The settings from DEPLOY_AGENT_CODEC_ENDPOINT and DEPLOY_AGENT_CODEC_CA, checked before anything is dialled. */
export function remoteCodecSettings(namespace: string, env: NodeJS.ProcessEnv = process.env): RemoteCodecSettings {
  const text = env.DEPLOY_AGENT_CODEC_ENDPOINT ?? '';
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidInput(`DEPLOY_AGENT_CODEC_ENDPOINT ${text}: expected an http(s) URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new InvalidInput(`DEPLOY_AGENT_CODEC_ENDPOINT ${text}: expected an http(s) URL`);
  if (url.username || url.password || url.search || url.hash)
    throw new InvalidInput(
      `DEPLOY_AGENT_CODEC_ENDPOINT: expected a base URL without credentials, query or fragment (${url.origin})`,
    );
  const caFile = env.DEPLOY_AGENT_CODEC_CA;
  let ca: Buffer | undefined;
  if (caFile) {
    if (url.protocol !== 'https:')
      throw new InvalidInput(`DEPLOY_AGENT_CODEC_CA is for an https endpoint; DEPLOY_AGENT_CODEC_ENDPOINT is ${text}`);
    try {
      ca = readFileSync(caFile);
    } catch (error) {
      throw new InvalidInput(
        `DEPLOY_AGENT_CODEC_CA ${caFile}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  }
  return { endpoint: text.replace(/\/+$/, ''), namespace, ca, caFile, token: tokenSource(text) };
}

/**
 * The request credential's token (DEPLOY_AGENT_TOKEN, client credentials, the saved login), fetched once and again
 * only when it is about to expire: a `--wait` may outlive a client-credentials token.
 */
function tokenSource(endpoint: string): () => Promise<string> {
  let cached: Promise<string> | undefined;
  let fetchedAtS = 0;
  return async () => {
    if (cached) {
      const token = await cached.catch(() => undefined);
      if (token && !expiresSoon(token, Date.now() / 1000, fetchedAtS)) return token;
    }
    fetchedAtS = Date.now() / 1000;
    cached = credentialFor('request').then((credential) => {
      if (credential.kind !== 'oidc')
        throw new InvalidInput(
          `the codec server at ${endpoint} needs an OpenID token: set DEPLOY_AGENT_TOKEN or DEPLOY_AGENT_TOKEN_FILE, ` +
            'DEPLOY_AGENT_CLIENT_ID, DEPLOY_AGENT_CLIENT_SECRET and DEPLOY_AGENT_OIDC_ISSUER, or run `deploy-agent login`',
        );
      return credential.token;
    });
    return cached;
  };
}

/** Whether a JWT's exp (read, not verified: only to know when to fetch another) is near or unreadable and old. */
export function expiresSoon(token: string, nowS: number, fetchedAtS: number): boolean {
  let exp: unknown;
  try {
    exp = (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }).exp;
  } catch {
    exp = undefined;
  }
  if (typeof exp !== 'number') return nowS - fetchedAtS > UNKNOWN_EXPIRY_S;
  return exp - EXPIRY_MARGIN_S <= nowS;
}

export class RemoteCodec implements PayloadCodec {
  constructor(private readonly settings: RemoteCodecSettings) {}

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('encode', payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('decode', payloads);
  }

  private async call(operation: 'encode' | 'decode', payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return payloads;
    const { endpoint, namespace, ca, caFile, timeoutMs = TIMEOUT_MS } = this.settings;
    const token = await this.settings.token();
    const body = JSON.stringify({ payloads: payloads.map(payloadToJson) });
    let answer: HttpAnswer;
    try {
      answer = await post(`${endpoint}/${operation}`, body, { token, namespace, ca, timeoutMs });
    } catch (error) {
      // A TLS failure reads the same as a refused connection otherwise: say whom the CLI trusted.
      const trusting = endpoint.startsWith('https:') ? ` (trusting ${caFile ?? "the system's CAs"})` : '';
      throw new CliFailure(
        `the codec server at ${endpoint} is unreachable: ${messageOf(error)}${trusting}`,
        EXIT.unreachable,
      );
    }
    return payloadsOfAnswer(endpoint, operation, payloads.length, answer);
  }
}

export interface HttpAnswer {
  status: number;
  text: string;
}

/** The payloads of a codec server's answer, or the failure it means for the CLI. */
export function payloadsOfAnswer(
  endpoint: string,
  operation: 'encode' | 'decode',
  expected: number,
  { status, text }: HttpAnswer,
): Payload[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const message = (body as { message?: unknown } | undefined)?.message;
  const said = typeof message === 'string' && message ? message : `HTTP ${status}`;
  if (status >= 500)
    throw new CliFailure(`the codec server at ${endpoint} cannot answer now: ${said}`, EXIT.unreachable);
  if (status !== 200) throw new InvalidInput(`the codec server at ${endpoint} refused: ${said}`);
  let payloads: Payload[];
  try {
    payloads = payloadsFromBody(body);
  } catch (error) {
    throw new InvalidInput(`the codec server at ${endpoint} answered /${operation} wrongly: ${messageOf(error)}`);
  }
  if (payloads.length !== expected)
    throw new InvalidInput(
      `the codec server at ${endpoint} answered /${operation} with ${payloads.length} payloads for ${expected}`,
    );
  return payloads;
}

/** One POST with Node's own client: it takes extra CAs per request, which fetch does not. */
function post(
  url: string,
  body: string,
  options: { token: string; namespace: string; ca?: Buffer; timeoutMs: number },
): Promise<HttpAnswer> {
  const target = new URL(url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const request = send(
      target,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json',
          authorization: `Bearer ${options.token}`,
          'x-namespace': options.namespace,
          'content-length': Buffer.byteLength(body),
        },
        ...(options.ca ? { ca: options.ca } : {}),
        timeout: options.timeoutMs,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('error', reject);
        response.once('end', () =>
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    request.once('timeout', () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    request.once('error', reject);
    request.end(body);
  });
}
