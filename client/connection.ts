/**
 * The CLI's one way to reach Temporal. A server that cannot be reached becomes `TemporalUnreachable` (exit 4),
 * recognised by the SDK's error classes and gRPC status codes, never by the text of a message.
 */
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
import { settings } from './settings.js';

/** gRPC status codes (fixed by the gRPC protocol) meaning the server was not reached or did not answer in time. */
const GRPC_DEADLINE_EXCEEDED = 4;
const GRPC_UNAVAILABLE = 14;
const NOT_REACHED = new Set([GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE]);

const opened = new Set<Connection>();

/**
 * Closes every connection the CLI opened. A verb may return while a call is still in flight (the long poll for a
 * deployment's result when --wait stops at compensation-failed or --timeout): the process must not wait for it.
 */
export async function closeConnections(): Promise<void> {
  await Promise.all([...opened].map((connection) => connection.close().catch(() => undefined)));
  opened.clear();
}

export async function connect(): Promise<Client> {
  const address = settings.address();
  const connection = Connection.lazy({ address, connectTimeout: '5s' });
  opened.add(connection);
  try {
    await connection.ensureConnected();
  } catch (error) {
    await connection.close().catch(() => undefined);
    throw notReached(error) ? new TemporalUnreachable(address, error) : error;
  }
  return new Client({ connection, namespace: settings.namespace() });
}

/**
 * Whether a failure of `ensureConnected` means Temporal was not reached. It first waits for the gRPC channel to be
 * ready: when nothing listens (or the name does not resolve), grpc-js's waitForReady rejects at the connect timeout
 * with a plain Error that carries no status code. Once the channel is ready it calls GetSystemInfo, whose failures
 * come as a `ServiceError` caused by a gRPC error with a status code: UNAVAILABLE and DEADLINE_EXCEEDED mean not
 * reached; any other code (UNAUTHENTICATED, PERMISSION_DENIED, ...) is an answer, and stays what it is.
 */
export function notReached(error: unknown): boolean {
  const code = grpcStatusIn(error);
  return code === undefined || NOT_REACHED.has(code);
}

/** The gRPC status code of an error or of one of its causes. */
function grpcStatusIn(error: unknown): number | undefined {
  for (let current: unknown = error; current instanceof Error; current = current.cause)
    if (isGrpcServiceError(current)) return current.code;
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
      throw new InvalidInput(`${what} refused: ${error.cause?.message ?? error.message}`);
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
