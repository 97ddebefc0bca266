/**
 * A thin JSON client for the Kubernetes API. The generated clients deserialize into typed models, which drop fields
 * they do not know and turn timestamps into Dates; snapshots and hashes need the objects exactly as the server has
 * them, so requests go through node:https with the credentials the kubeconfig describes.
 */
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { KubernetesTarget } from '../../domain/kubernetes.js';
import { fail, isConnectionError, unreachable } from '../../domain/failures.js';
import { cancellationSignal, checkpoint } from '../targets/attempt.js';

// Below the 30 s heartbeat timeout of change activities: one silent call cannot look like a dead worker.
const REQUEST_TIMEOUT_MS = 25_000;
// Throttled (429) or not ready (503) with a Retry-After: waited out inside the call, this many times at most.
const RETRY_AFTER_ATTEMPTS = 5;
const MAX_RETRY_AFTER_MS = 10_000;

export type KubeObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
};

export interface StatusCause {
  field?: string;
  message?: string;
  reason?: string;
}

/** The API's Status object: what a failed request says, with the fields it complained about. */
export interface KubeStatus {
  message?: string;
  reason?: string;
  code?: number;
  details?: { causes?: StatusCause[] };
}

export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: KubeStatus,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.reason ?? ''} ${body.message ?? ''}`.trim());
  }
}

export const isNotFound = (error: unknown): boolean => error instanceof KubeApiError && error.status === 404;

export interface ApiResource {
  name: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | undefined>;
}

export interface Cluster {
  server: string;
  request<T>(method: string, path: string, options?: RequestOptions): Promise<T>;
  /** Discovery: the resource serving apiVersion/kind, or undefined when the server does not serve it. */
  resource(apiVersion: string, kind: string): Promise<ApiResource | undefined>;
}

/**
 * A kubeconfig holds tokens and keys, and the YAML parser's message quotes the lines around an error: only the
 * position and the kind of error are reported.
 */
function loadKubeconfigFile(kc: KubeConfig, file: string): void {
  try {
    kc.loadFromFile(file);
  } catch (error) {
    const { mark, reason } = error as { mark?: { line: number; column: number }; reason?: unknown };
    if (!mark) throw fail('invalid', `kubeconfig ${file} cannot be loaded: ${(error as Error).message}`);
    const kind = typeof reason === 'string' && /^[a-z ,-]+$/i.test(reason) ? reason : 'YAML syntax error';
    throw fail('invalid', `kubeconfig ${file}: line ${mark.line + 1}, column ${mark.column + 1}: ${kind}`);
  }
}

function loadConfig(target: KubernetesTarget): KubeConfig {
  const kc = new KubeConfig();
  if (target.kubeconfig) {
    if (!existsSync(target.kubeconfig)) throw fail('invalid', `kubeconfig ${target.kubeconfig} does not exist`);
    loadKubeconfigFile(kc, target.kubeconfig);
  } else kc.loadFromDefault();
  if (target.context) {
    if (!kc.getContextObject(target.context))
      throw fail(
        'invalid',
        `kubeconfig has no context "${target.context}" (known: ${kc.contexts.map((c) => c.name).join(', ')})`,
      );
    kc.setCurrentContext(target.context);
  }
  if (!kc.getCurrentCluster()) throw fail('invalid', 'the kubeconfig names no cluster for its current context');
  // A kubeconfig whose user runs a program would run it as the worker, before any approval.
  const user = kc.getCurrentUser();
  if ((user?.exec || user?.authProvider) && !target.allowExecCredentials)
    throw fail(
      'forbidden',
      `the kubeconfig's user ${user.name} runs a credential program (${user.exec ? 'exec' : 'auth-provider'}), ` +
        `which the platform policy does not allow for ${target.environment} (kubernetes.allowExecCredentials)`,
    );
  return kc;
}

function send(
  url: URL,
  options: https.RequestOptions,
  body: string | undefined,
): Promise<{ status: number; text: string; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          text: Buffer.concat(chunks).toString('utf8'),
          retryAfter: res.headers['retry-after'],
        }),
      );
      res.on('error', reject);
    };
    const req =
      url.protocol === 'https:' ? https.request(url, options, onResponse) : http.request(url, options, onResponse);
    req.setTimeout(REQUEST_TIMEOUT_MS, () =>
      req.destroy(Object.assign(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })),
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** How long the server asked us to wait (API Priority and Fairness answers 429 with Retry-After). */
function retryAfterMs(res: { status: number; retryAfter?: string }): number | undefined {
  if ((res.status !== 429 && res.status !== 503) || res.retryAfter === undefined) return undefined;
  // Retry-After is either delay-seconds or an HTTP date.
  const seconds = Number(res.retryAfter);
  const waitMs = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(res.retryAfter) - Date.now();
  return Number.isFinite(waitMs) ? Math.min(Math.max(waitMs, 0), MAX_RETRY_AFTER_MS) : undefined;
}

function parseStatus(text: string): KubeStatus {
  try {
    return JSON.parse(text) as KubeStatus;
  } catch {
    return { message: text.slice(0, 500) };
  }
}

/** One connection per activity call: credentials (tokens of exec plugins included) are read fresh each time. */
export function connect(target: KubernetesTarget): Cluster {
  const kc = loadConfig(target);
  const server = kc.getCurrentCluster()?.server ?? '';
  const discovery = new Map<string, Promise<ApiResource[]>>();

  const request = async <T>(method: string, path: string, options: RequestOptions = {}): Promise<T> => {
    const url = new URL(server.replace(/\/$/, '') + path);
    for (const [key, value] of Object.entries(options.query ?? {}))
      if (value !== undefined) url.searchParams.set(key, value);
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const requestOptions: https.RequestOptions = { method, headers: {}, signal: cancellationSignal() };
    await kc.applyToHTTPSOptions(requestOptions);
    requestOptions.headers = {
      ...requestOptions.headers,
      Accept: 'application/json',
      ...(body === undefined
        ? {}
        : { 'Content-Type': options.contentType ?? 'application/json', 'Content-Length': Buffer.byteLength(body) }),
    };
    let res: Awaited<ReturnType<typeof send>>;
    for (let attempt = 1; ; attempt++) {
      try {
        res = await send(url, requestOptions, body);
      } catch (error) {
        checkpoint();
        if (isConnectionError(error)) throw unreachable(`Kubernetes API ${server}`, error);
        throw error;
      }
      const waitMs = retryAfterMs(res);
      if (waitMs === undefined || attempt >= RETRY_AFTER_ATTEMPTS) break;
      checkpoint({ throttled: `${method} ${url.pathname}`, retryAfterMs: waitMs });
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
    // An apiserver that answers but cannot serve yet is as good as unreachable: worth retrying.
    if ([502, 503, 504].includes(res.status))
      throw unreachable(`Kubernetes API ${server}`, new Error(`HTTP ${res.status} for ${method} ${url.pathname}`));
    // An API server that has just started answers 403 until its authorizer has read the Roles: not ready yet.
    const refusal = res.status === 401 || res.status === 403 ? parseStatus(res.text).message : undefined;
    if (refusal && /RBAC: \S+ "[^"]+" not found/.test(refusal))
      throw unreachable(`Kubernetes API ${server}`, new Error(`authorization not ready yet: ${refusal}`));
    // The worker's own credentials lack a permission: retrying cannot grant it; the message names what is missing.
    if (res.status === 401 || res.status === 403)
      throw fail(
        'forbidden',
        `the worker's Kubernetes credentials may not ${method} ${url.pathname}: ` +
          (parseStatus(res.text).message ?? `HTTP ${res.status}`),
      );
    if (res.status < 200 || res.status > 299)
      throw new KubeApiError(res.status, parseStatus(res.text), `${method} ${url.pathname}`);
    return (res.text ? JSON.parse(res.text) : {}) as T;
  };

  const resource = async (apiVersion: string, kind: string): Promise<ApiResource | undefined> => {
    const base = apiBase(apiVersion);
    let listed = discovery.get(base);
    if (!listed) {
      listed = request<{ resources?: ApiResource[] }>('GET', base).then(
        (list) => (list.resources ?? []).filter((r) => !r.name.includes('/')),
        (error: unknown) => {
          if (isNotFound(error)) return [];
          throw error;
        },
      );
      discovery.set(base, listed);
    }
    return (await listed).find((r) => r.kind === kind);
  };

  return { server, request, resource };
}

/** `/apis/<group>/<version>` or `/api/<version>`, each part one encoded path segment. */
export function apiBase(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  if (slash === -1) return `/api/${encodeURIComponent(apiVersion)}`;
  return `/apis/${encodeURIComponent(apiVersion.slice(0, slash))}/${encodeURIComponent(apiVersion.slice(slash + 1))}`;
}

/** The collection path of a kind in a namespace (or cluster-wide); undefined when the kind is not served. */
export async function collectionPath(
  cluster: Cluster,
  apiVersion: string,
  kind: string,
  namespace: string,
): Promise<string | undefined> {
  const found = await cluster.resource(apiVersion, kind);
  if (!found) return undefined;
  return found.namespaced
    ? `${apiBase(apiVersion)}/namespaces/${encodeURIComponent(namespace)}/${encodeURIComponent(found.name)}`
    : `${apiBase(apiVersion)}/${encodeURIComponent(found.name)}`;
}

// Timeouts, conflicts and throttling (API Priority and Fairness) say "not now", not "never": worth a retry.
const TRANSIENT_CLIENT_ERRORS = new Set([408, 409, 429]);

/** The server refused the request for what it holds: the release's fault, so retrying cannot help. */
export function isRefusal(error: unknown): error is KubeApiError {
  return (
    error instanceof KubeApiError &&
    error.status >= 400 &&
    error.status < 500 &&
    !TRANSIENT_CLIENT_ERRORS.has(error.status)
  );
}

/** A refusal as the invalid-release failure naming what was refused and why; anything else unchanged. */
export function asRefusal(error: unknown, what: string): unknown {
  return isRefusal(error) ? fail('invalid', `${what}: ${explain(error)}`) : error;
}

/** What the server said about a request, with each field it complained about. */
export function explain(error: KubeApiError): string {
  const causes = (error.body.details?.causes ?? []).filter((c) => c.field || c.message);
  if (causes.length === 0) return error.body.message ?? error.message;
  return causes
    .map((c) => (c.field ? `${c.field}: ${c.message ?? c.reason ?? 'invalid'}` : (c.message ?? '')))
    .join('; ');
}

export interface ApplyOptions {
  fieldManager: string;
  dryRun?: boolean;
  /** False: a field another manager holds is a conflict (409) rather than taken over. */
  force?: boolean;
}

/** Server-side apply, forced unless told otherwise: the release owns every field it sets, whoever set it before. */
export async function serverSideApply(
  cluster: Cluster,
  object: KubeObject,
  options: ApplyOptions,
): Promise<KubeObject> {
  const found = await cluster.resource(object.apiVersion, object.kind);
  if (!found) throw fail('invalid', `${object.kind} ${object.apiVersion} is not served by the cluster`);
  if (!found.namespaced)
    throw fail('invalid', `${object.kind} is cluster-scoped; a release holds namespaced objects only`);
  const namespace = object.metadata.namespace ?? '';
  const collection = await collectionPath(cluster, object.apiVersion, object.kind, namespace);
  return cluster.request<KubeObject>('PATCH', `${collection}/${encodeURIComponent(object.metadata.name)}`, {
    body: object,
    contentType: 'application/apply-patch+yaml',
    query: {
      fieldManager: options.fieldManager,
      force: options.force === false ? undefined : 'true',
      dryRun: options.dryRun ? 'All' : undefined,
    },
  });
}

/** Deletes an object; already gone is fine. Dependents (ReplicaSets, pods) go with it in the background. */
export async function deleteObject(
  cluster: Cluster,
  ref: { apiVersion: string; kind: string; namespace: string; name: string },
): Promise<boolean> {
  const collection = await collectionPath(cluster, ref.apiVersion, ref.kind, ref.namespace);
  if (!collection) return false;
  try {
    await cluster.request('DELETE', `${collection}/${encodeURIComponent(ref.name)}`, {
      body: { propagationPolicy: 'Background' },
    });
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}
