/**
 * The CLI's one way to reach Temporal. A server that cannot be reached, or that refuses this client's TLS handshake
 * or credentials, becomes `TemporalUnreachable` (exit 4), recognised by the SDK's error classes and gRPC status codes,
 * never by the text of a message.
 */
import net from 'node:net';
import tls from 'node:tls';
import {
  Client,
  Connection,
  isGrpcServiceError,
  type WorkflowHandle,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';
import { parseDeploymentId } from '../domain/deployment.js';
import { InvalidInput, messageOf, TemporalUnreachable } from '../domain/failures.js';
import { beforeCliExit } from './exit-hooks.js';
import { clientDataConverter } from './remote-codec.js';
import { connectionSettings, type TemporalConnectionSettings } from './settings.js';

/** gRPC status codes (fixed by the gRPC protocol) meaning the server was not reached or did not answer in time. */
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;
const NOT_REACHED = new Set([GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE]);
/** The server, or a TLS front before it, refused this client's certificate or API key. */
const GRPC_UNAUTHENTICATED = 16;

const CONNECT_TIMEOUT = '5s';
/** For each step of the diagnosis after a failed connect: the TCP connect, then the TLS handshake. */
const PROBE_MS = 3_000;

const opened = new Set<Connection>();

/**
 * Closes every connection the CLI opened. A verb may return while a call is still in flight (the long poll for a
 * deployment's result when --wait stops at compensation-failed or --timeout): the process must not wait for it.
 */
export async function closeConnections(): Promise<void> {
  await Promise.all([...opened].map((connection) => connection.close().catch(() => undefined)));
  opened.clear();
}

beforeCliExit(closeConnections);

export async function connect(): Promise<Client> {
  const configured = connectionSettings();
  const { address, namespace, apiKey, metadata } = configured;
  // Before dialling: without the payload keys or a codec server nothing the workers write could be read (exit 2,
  // naming the variables).
  const converter = clientDataConverter(namespace);
  let connection: Connection;
  try {
    connection = Connection.lazy({ address, tls: configured.tls, apiKey, metadata, connectTimeout: CONNECT_TIMEOUT });
  } catch (error) {
    // The options themselves are wrong (a key that does not match its certificate, say): nothing was dialled yet.
    throw new InvalidInput(`Temporal connection settings: ${messageOf(error)}`);
  }
  opened.add(connection);
  try {
    await connection.ensureConnected();
  } catch (error) {
    await connection.close().catch(() => undefined);
    throw await whyNotConnected(error, configured);
  }
  return new Client({ connection, namespace, dataConverter: converter });
}

/**
 * What a failed `ensureConnected` means for the CLI. UNAUTHENTICATED is the server (or the TLS front before it)
 * refusing this client's certificate or API key: the client cannot get in, as if Temporal were unreachable. A
 * refused TCP connection and a failed TLS handshake both show up only as grpc-js's "Failed to connect before the
 * deadline", without the reason, so a connection of its own (same certificates, same trust) finds out which.
 */
async function whyNotConnected(error: unknown, configured: TemporalConnectionSettings): Promise<unknown> {
  const { address } = configured;
  const code = grpcStatusIn(error);
  if (code === GRPC_UNAUTHENTICATED)
    return new TemporalUnreachable(
      address,
      `the server refused this client's credentials: ${grpcErrorIn(error)?.details} (UNAUTHENTICATED; sent ${credentialsSent(configured)})`,
    );
  if (!notReached(error)) return error;
  if (code === undefined) {
    const found = await diagnose(configured).catch(() => undefined);
    if (found) return new TemporalUnreachable(address, found);
  }
  return new TemporalUnreachable(address, error);
}

function credentialsSent({ profile }: TemporalConnectionSettings): string {
  const cert = profile.tls?.clientCert;
  const certificate = cert
    ? `client certificate ${'path' in cert ? cert.path : '(inline data)'}`
    : 'no client certificate';
  return `${certificate}, ${profile.apiKey ? 'an API key' : 'no API key'}`;
}

/**
 * Dials the address and shakes hands as the gRPC client would: what stopped the connection (the TCP connect's error,
 * the handshake's), or undefined when both work and something else went wrong.
 */
async function diagnose({ address, tls: configured, profile }: TemporalConnectionSettings) {
  const target = hostAndPort(address);
  if (!target) return undefined;
  const socket = await tcpConnect(target.host, target.port);
  if (socket instanceof Error) return socket.message;
  if (!configured) {
    // Nothing asked for TLS: a server that completes a handshake anyway is one that wants it.
    const outcome = await handshake(socket, { rejectUnauthorized: false });
    return outcome === 'ok'
      ? "the server expects TLS, and none is configured (TEMPORAL_TLS, TEMPORAL_TLS_* variables or a profile's tls)"
      : undefined;
  }
  const options = configured === true ? {} : configured;
  const serverName = options.serverNameOverride;
  const outcome = await handshake(socket, {
    ca: options.serverRootCACertificate ? [Buffer.from(options.serverRootCACertificate)] : undefined,
    cert: options.clientCertPair ? Buffer.from(options.clientCertPair.crt) : undefined,
    key: options.clientCertPair ? Buffer.from(options.clientCertPair.key) : undefined,
    // SNI carries host names only; an IP address is checked against the certificate's IP SANs without it.
    servername: serverName ?? (net.isIP(target.host) ? undefined : target.host),
    checkServerIdentity: (host, cert) => tls.checkServerIdentity(serverName ?? host, cert),
  });
  if (outcome === 'ok') return undefined;
  const ca = profile.tls?.serverCACert;
  const trusted = ca ? `CA ${'path' in ca ? ca.path : '(inline data)'}` : "the system's CAs";
  return `TLS handshake failed: ${tlsReason(outcome)} (trusting ${trusted})`;
}

/**
 * OpenSSL's own errors carry a short `reason` beside a message that dumps source locations; certificate checks
 * carry a message to which Node adds advice about its own flags, which a CLI user cannot pass.
 */
function tlsReason(error: Error & { code?: string; reason?: string }): string {
  if (error.code === 'ERR_SSL_WRONG_VERSION_NUMBER') return 'the server does not answer in TLS (wrong version number)';
  return error.reason ?? error.message.split('; ')[0] ?? error.message;
}

function hostAndPort(address: string): { host: string; port: number } | undefined {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  return match?.[1] && match[2] ? { host: match[1], port: Number(match[2]) } : undefined;
}

function tcpConnect(host: string, port: number): Promise<net.Socket | Error> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const failed = (error: Error) => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(PROBE_MS, () => failed(new Error(`connect to ${host}:${port}: no answer within ${PROBE_MS} ms`)));
    socket.once('error', failed);
    socket.once('connect', () => {
      socket.removeListener('error', failed);
      socket.setTimeout(0);
      resolve(socket);
    });
  });
}

/** A TLS handshake over a connected socket, ALPN h2 like gRPC, bounded in time; the socket is closed after. */
function handshake(socket: net.Socket, options: tls.ConnectionOptions): Promise<'ok' | Error> {
  return new Promise((resolve) => {
    const secured = tls.connect({ ...options, socket, ALPNProtocols: ['h2'] });
    const finish = (outcome: 'ok' | Error) => {
      clearTimeout(timer);
      secured.destroy();
      socket.destroy();
      resolve(outcome);
    };
    const timer = setTimeout(() => finish(new Error(`no answer within ${PROBE_MS} ms`)), PROBE_MS);
    secured.once('secureConnect', () => finish('ok'));
    // The first error decides; later ones (from either socket, while closing) must find a listener.
    secured.on('error', finish);
    socket.on('error', finish);
    secured.once('close', () => finish(new Error('the server closed the connection')));
  });
}

/**
 * Whether a failure of `ensureConnected` means Temporal was not reached. It first waits for the gRPC channel to be
 * ready: when nothing listens (or the name does not resolve), grpc-js's waitForReady rejects at the connect timeout
 * with a plain Error that carries no status code. Once the channel is ready it calls GetSystemInfo, whose failures
 * come as a `ServiceError` caused by a gRPC error with a status code: UNAVAILABLE and DEADLINE_EXCEEDED mean not
 * reached; any other code (UNAUTHENTICATED, PERMISSION_DENIED, ...) is an answer, which `connect` judges itself.
 */
export function notReached(error: unknown): boolean {
  const code = grpcStatusIn(error);
  return code === undefined || NOT_REACHED.has(code);
}

/** The gRPC status code of an error or of one of its causes. */
function grpcStatusIn(error: unknown): number | undefined {
  return grpcErrorIn(error)?.code;
}

function grpcErrorIn(error: unknown) {
  for (let current: unknown = error; current instanceof Error; current = current.cause)
    if (isGrpcServiceError(current)) return current;
  return undefined;
}

const GRPC_NOT_FOUND = 5;

/**
 * Sends an Update to a deployment; a refusal is invalid input (exit 2): the workflow's validator said no, or the
 * deployment has ended (an ended workflow takes no Updates) or never existed.
 */
export async function sendUpdate<R>(what: string, send: () => Promise<R>): Promise<R> {
  try {
    return await send();
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError)
      // The workflow's own refusals already say so ("vote refused: ..."): said once.
      throw new InvalidInput(
        `${what} refused: ${(error.cause?.message ?? error.message).replace(/^\w+ refused: /, '')}`,
      );
    if (error instanceof WorkflowNotFoundError || grpcStatusIn(error) === GRPC_NOT_FOUND)
      throw new InvalidInput(`${what} refused: the deployment has ended or does not exist (${messageOf(error)})`);
    throw error;
  }
}

/** The handle of one deployment; the id is parsed before connecting, so a malformed one is invalid input (exit 2). */
export async function deploymentHandle(deploymentId: string): Promise<WorkflowHandle> {
  const { workflowId, runId } = parseDeploymentId(deploymentId);
  const client = await connect();
  return client.workflow.getHandle(workflowId, runId);
}
