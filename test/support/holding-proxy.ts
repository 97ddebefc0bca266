/**
 * A registry proxy that can hold image downloads: while held, the responses for the chosen blobs wait (sending
 * nothing) until released, as a stalled registry would. Manifests and the other blobs pass at once, so a deploy
 * resolves its image and then stalls in the pull of its layers, the slowest part of an apply.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HoldingProxy {
  address: string;
  /** Blob requests seen while held. */
  held: number;
  /** Holds the downloads of these blobs (digests `sha256:...`). */
  hold(digests: string[]): void;
  release(): void;
  close(): Promise<void>;
}

export async function startHoldingProxy(registry: string): Promise<HoldingProxy> {
  let holding = new Set<string>();
  let waiting: (() => void)[] = [];
  const state = { held: 0 };
  const server = http.createServer((req, res) => {
    const forward = () => {
      const upstream = http.request(
        `http://${registry}${req.url ?? '/'}`,
        { method: req.method, headers: { ...req.headers, host: registry } },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})/.exec(req.url ?? '')?.[1];
    if (blob && holding.has(blob) && req.method === 'GET') {
      state.held += 1;
      waiting.push(forward);
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    get held() {
      return state.held;
    },
    hold: (digests) => {
      holding = new Set(digests);
    },
    release: () => {
      holding = new Set();
      const released = waiting;
      waiting = [];
      for (const forward of released) forward();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The layers of `repository:tag` that `repository:other` does not share: what a pull of it downloads, to hold. */
export async function layersOnlyIn(
  registry: string,
  repository: string,
  tag: string,
  other: string,
): Promise<string[]> {
  const layers = async (reference: string) => {
    const response = await fetch(`http://${registry}/v2/${repository}/manifests/${reference}`, {
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    const manifest = (await response.json()) as { layers: { digest: string }[] };
    return manifest.layers.map((layer) => layer.digest);
  };
  const shared = new Set(await layers(other));
  return (await layers(tag)).filter((digest) => !shared.has(digest));
}
