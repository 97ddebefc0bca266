/**
 * An HTTPS proxy in front of a Kubernetes API server that throttles like API Priority and Fairness does: every Nth
 * request is answered `429 Too Many Requests` with `Retry-After` and a Status body, without reaching the server;
 * the others are forwarded as they came, credentials included, and answered with what the server said. Every request
 * is recorded with its answer, so a test can tell which ones were throttled and whether they were served later.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  method: string;
  /** The path, without the query. */
  path: string;
  query: URLSearchParams;
  /** What the client got: 429 when throttled here, else the server's answer (502 when it could not be reached). */
  status: number;
  throttled: boolean;
}

export interface ThrottlingProxy {
  /** https://127.0.0.1:PORT, for a kubeconfig's `server`. */
  url: string;
  /** Every request answered so far, in the order the answers began. */
  readonly requests: readonly ProxiedRequest[];
  close(): Promise<void>;
}

export interface ThrottlingProxyOptions {
  /** The API server, https://HOST:PORT. */
  upstream: string;
  /** CA bundle the upstream's certificate is checked against. */
  upstreamCa: string;
  /** Certificate chain and key this proxy serves. */
  cert: string;
  key: string;
  /** Throttles the Nth, 2Nth, ... request (N >= 2, so the retry of a throttled request alone is let through). */
  every: number;
  retryAfterSeconds?: number;
}

export async function startThrottlingProxy(options: ThrottlingProxyOptions): Promise<ThrottlingProxy> {
  if (!Number.isInteger(options.every) || options.every < 2) throw new Error('throttling proxy: every must be >= 2');
  const retryAfter = options.retryAfterSeconds ?? 1;
  const upstream = new URL(options.upstream);
  const agent = new https.Agent({ keepAlive: true, ca: options.upstreamCa });
  const requests: ProxiedRequest[] = [];
  let seen = 0;

  const server = https.createServer({ cert: options.cert, key: options.key }, (req, res) => {
    seen += 1;
    const url = new URL(req.url ?? '/', upstream);
    const record = (status: number, throttled: boolean) =>
      requests.push({ method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, status, throttled });

    if (seen % options.every === 0) {
      // Read the body first: answering before it arrived could leave the client writing into a closed stream.
      req.resume();
      req.once('end', () => {
        const body = JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: 'Too many requests, please try again later.',
          reason: 'TooManyRequests',
          details: { retryAfterSeconds: retryAfter },
          code: 429,
        });
        record(429, true);
        res.writeHead(429, {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'Retry-After': String(retryAfter),
        });
        res.end(body);
      });
      return;
    }

    const forwarded = https.request(
      url,
      { method: req.method, headers: { ...req.headers, host: upstream.host }, agent },
      (answer) => {
        record(answer.statusCode ?? 502, false);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on('error', (error) => {
      record(502, false);
      if (res.headersSent) res.destroy();
      else res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`throttling proxy: ${error.message}`);
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}
