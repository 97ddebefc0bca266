/**
 * The codec server: Temporal's remote codec protocol (POST /decode and /encode with `{payloads: [...]}` in proto3
 * JSON), so the Temporal Web UI and `temporal --codec-endpoint` can show payloads in clear to the people the
 * platform policy names as `payloadReaders`, and to nobody else; the CLI without the key ring encodes and decodes
 * through it too (client/remote-codec.ts). Every request needs an OpenID Connect access token,
 * verified exactly as the worker verifies votes (issuer, audience, signature, algorithm allowlist, expiry). Browsers
 * get CORS answers only for the origins allowed. The token never appears in a log line or an answer.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Payload } from '@temporalio/common';
import { verifyCredential } from '../activities/identity.js';
import { failureKindOf, messageOf } from '../domain/failures.js';
import { type Identity, type IdentitySettings, isNamed } from '../domain/identity.js';
import type { KeyRing } from '../keys/key-ring.js';
import { PayloadEncryptionCodec } from './payload-codec.js';
import { payloadsFromBody, payloadToJson } from './payload-json.js';

export interface CodecServerSettings {
  keyRing: KeyRing;
  /** The policy's identity settings: the OpenID provider tokens must come from. */
  identity: IdentitySettings;
  /** The policy's `payloadReaders`. */
  readers: readonly string[];
  /** Origins a browser may call from (the Temporal Web UI's), exactly as the browser sends them. */
  allowOrigins: readonly string[];
  /** With a certificate and key the server speaks HTTPS (the UI sends tokens only to an https codec endpoint). */
  tls?: { cert: Buffer; key: Buffer };
  log?: (line: string) => void;
}

export const ALLOWED_HEADERS = 'content-type, x-namespace, authorization, authorization-extras';
// Temporal payloads are at most 2 MB each; a page of a history can hold several.
const MAX_BODY_BYTES = 16 * 1024 * 1024;

class Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function createCodecServer(settings: CodecServerSettings): Server {
  const handler = (request: IncomingMessage, response: ServerResponse) => {
    handle(settings, request, response).catch((error: unknown) => {
      const status = error instanceof Refusal ? error.status : 500;
      const message = error instanceof Refusal ? error.message : 'internal error';
      if (status >= 400)
        settings.log?.(
          `codec-server: refused ${request.method} ${request.url} (origin ${request.headers.origin ?? 'none'}): ` +
            `${status} ${error instanceof Refusal ? error.message : messageOf(error)}`,
        );
      if (!response.headersSent) answer(response, status, { message });
      else response.destroy();
    });
  };
  return settings.tls
    ? createHttpsServer({ cert: settings.tls.cert, key: settings.tls.key }, handler)
    : createHttpServer(handler);
}

/** Listens on host:port (port 0: any free one); the URL is what `--ui-codec-endpoint` and `--codec-endpoint` take. */
export async function startCodecServer(
  settings: CodecServerSettings,
  port: number,
  host = '127.0.0.1',
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createCodecServer(settings);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const url = `${settings.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  return {
    url,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(settings: CodecServerSettings, request: IncomingMessage, response: ServerResponse) {
  const origin = request.headers.origin;
  const allowedOrigin = origin !== undefined && settings.allowOrigins.includes(origin) ? origin : undefined;
  if (allowedOrigin) {
    response.setHeader('Access-Control-Allow-Origin', allowedOrigin);
    response.setHeader('Access-Control-Allow-Credentials', 'true');
  }
  response.setHeader('Vary', 'Origin');
  if (request.method === 'OPTIONS') {
    // A preflight from an origin not allowed gets no CORS headers: the browser will not send the request.
    if (!allowedOrigin) throw new Refusal(403, 'origin not allowed');
    response.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
    response.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
    response.setHeader('Access-Control-Max-Age', '600');
    response.writeHead(204).end();
    return;
  }
  const path = new URL(request.url ?? '/', 'http://codec').pathname.replace(/\/+$/, '');
  const operation = path === '/decode' ? 'decode' : path === '/encode' ? 'encode' : undefined;
  if (!operation) throw new Refusal(404, 'not found: POST /decode or /encode');
  if (request.method !== 'POST') throw new Refusal(405, `${request.method} not allowed: POST ${path}`);
  // A browser from another origin may still send a simple request; without CORS it cannot read the answer, but
  // nothing is decoded for it either.
  if (origin !== undefined && !allowedOrigin) throw new Refusal(403, 'origin not allowed');

  const who = await caller(settings, request.headers.authorization, operation);
  const payloads = await readPayloads(request);
  const codec = new PayloadEncryptionCodec(settings.keyRing);
  let result: Payload[];
  try {
    result = operation === 'decode' ? await codec.decode(payloads) : await codec.encode(payloads);
  } catch (error) {
    throw new Refusal(422, messageOf(error));
  }
  settings.log?.(`codec-server: ${operation} of ${payloads.length} payloads for ${who.user}`);
  answer(response, 200, { payloads: result.map(payloadToJson) });
}

/**
 * The verified identity behind the bearer token. Decoding is for payload readers only. Encoding is for every verified
 * identity: its answer is ciphertext under keys the caller never sees, so it reveals nothing, and it is what lets a
 * requester without the key ring start a deployment (the worker still judges who may deploy, from the token in the
 * request). It gives nothing a caller could not do already: a client without the codec can store plain payloads,
 * which decode as they are.
 */
async function caller(
  settings: CodecServerSettings,
  authorization: string | undefined,
  operation: 'decode' | 'encode',
): Promise<Identity> {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
  if (!token) throw new Refusal(401, 'an OpenID Connect access token is required (Authorization: Bearer <token>)');
  if (!settings.identity.oidc)
    throw new Refusal(401, 'this codec server verifies no tokens: the policy names no OpenID provider');
  let who: Identity;
  try {
    who = await verifyCredential({ credential: { kind: 'oidc', token }, settings: settings.identity });
  } catch (error) {
    // The provider did not answer: not the caller's fault, and perhaps over in a moment.
    if (failureKindOf(error) === 'unreachable') throw new Refusal(503, messageOf(error));
    throw new Refusal(401, messageOf(error));
  }
  if (operation === 'decode' && !isNamed(who, settings.readers))
    throw new Refusal(
      403,
      `${who.user} may not read payloads (payloadReaders: ${settings.readers.join(', ') || 'nobody'})`,
    );
  return who;
}

async function readPayloads(request: IncomingMessage): Promise<Payload[]> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Refusal(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Refusal(400, 'expected a JSON body {payloads: [...]}');
  }
  try {
    return payloadsFromBody(body);
  } catch (error) {
    throw new Refusal(400, messageOf(error));
  }
}

function answer(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' }).end(text);
}
