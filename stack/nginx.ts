// An mTLS front for a plaintext gRPC server (the Temporal dev server has no TLS flags): Debian's nginx terminates
// TLS, requires a client certificate from a test CA and passes gRPC on. For tests only, on loopback; the upstream
// stays reachable without TLS by anything local, so the front proves what clients do, not a security boundary.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, startAndWait, tcpAnswers } from './processes.js';

const run = promisify(execFile);

const START_MS = 20_000;
const OPENSSL_MS = 30_000;
// A Temporal long poll lasts up to about 70 s; nginx's default 60 s would cut every one of them with a 504.
const GRPC_TIMEOUT = '300s';
// A worker keeps one connection for its whole life; the default 1000 requests would end it with a GOAWAY.
const KEEPALIVE_REQUESTS = 1_000_000_000;
// Where Debian puts nginx; a caller's PATH (the tests pass a minimal one) may lack the sbin directories.
const NGINX_CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'];

export interface CertificateAuthority {
  /** The CA certificate (PEM): what a server or client trusts. */
  caPath: string;
  /** Issues a certificate and key signed by this CA into the CA's directory. */
  issue(name: string, use: 'server' | 'client'): Promise<{ certPath: string; keyPath: string }>;
}

export interface MtlsFront {
  /** 127.0.0.1:PORT, for TEMPORAL_ADDRESS. */
  address: string;
  /** The CA that signed the server certificate and the one client certificate the front accepts. */
  caPath: string;
  clientCertPath: string;
  clientKeyPath: string;
  /** One line per request once it ends: method path, status, client certificate verdict, user agent. */
  accessLog: string;
  /** Stops nginx (its whole process group). Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * A throwaway CA in `dir`. Keys are P-256: quick to generate, and accepted by both TLS stacks that dial Temporal
 * (Node's OpenSSL for the CLI, rustls in the worker's core).
 */
export async function createCertificateAuthority(dir: string, commonName: string): Promise<CertificateAuthority> {
  await mkdir(dir, { recursive: true });
  const caPath = path.join(dir, 'ca.pem');
  const caKeyPath = path.join(dir, 'ca-key.pem');
  await openssl([
    ...['req', '-x509', '-new', ...newKey(caKeyPath), '-out', caPath, '-days', '2', '-subj', `/CN=${commonName}`],
    ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  ]);
  return {
    caPath,
    async issue(name, use) {
      const certPath = path.join(dir, `${name}.pem`);
      const keyPath = path.join(dir, `${name}-key.pem`);
      const csrPath = path.join(dir, `${name}.csr`);
      const extPath = path.join(dir, `${name}.ext`);
      // rustls accepts a server only by its subject alternative names, never by the common name.
      const extensions = [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        use === 'server' ? 'extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1' : 'extendedKeyUsage=clientAuth',
      ];
      await writeFile(extPath, `${extensions.join('\n')}\n`);
      await openssl(['req', '-new', ...newKey(keyPath), '-out', csrPath, '-subj', `/CN=${name}`]);
      await openssl([
        'x509',
        '-req',
        '-in',
        csrPath,
        '-CA',
        caPath,
        '-CAkey',
        caKeyPath,
        '-set_serial',
        `0x${randomBytes(8).toString('hex')}`,
        '-days',
        '2',
        '-extfile',
        extPath,
        '-out',
        certPath,
      ]);
      return { certPath, keyPath };
    },
  };
}

/** nginx on a free loopback port: TLS with a required client certificate, gRPC passed to `upstream` in plaintext. */
export async function startMtlsFront(options: { upstream: string; workDir: string }): Promise<MtlsFront> {
  const dir = path.resolve(options.workDir);
  await mkdir(path.join(dir, 'temp'), { recursive: true });
  const authority = await createCertificateAuthority(path.join(dir, 'pki'), 'deploy-agent test CA');
  const server = await authority.issue('server', 'server');
  const client = await authority.issue('client', 'client');
  const port = await freePort();
  const accessLog = path.join(dir, 'access.log');
  const configFile = path.join(dir, 'nginx.conf');
  await writeFile(
    configFile,
    nginxConfig({ dir, port, upstream: options.upstream, caPath: authority.caPath, server, accessLog }),
  );
  const nginx = await startAndWait({
    name: 'nginx',
    command: nginxPath(),
    // -e: where errors before the configuration is read go is a build option; here they belong in the log too.
    args: ['-c', configFile, '-p', dir, '-e', 'stderr'],
    logFile: path.join(dir, 'nginx.log'),
    ready: { probe: () => tcpAnswers('127.0.0.1', port), timeoutMs: START_MS },
  });
  return {
    address: `127.0.0.1:${port}`,
    caPath: authority.caPath,
    clientCertPath: client.certPath,
    clientKeyPath: client.keyPath,
    accessLog,
    async stop() {
      // SIGTERM is nginx's fast shutdown: open long polls are cut at once instead of being waited for. Its workers
      // stay in its process group, which a dying test process kills too.
      await nginx.stop({ graceMs: 5_000 });
    },
  };
}

function nginxConfig(options: {
  dir: string;
  port: number;
  upstream: string;
  caPath: string;
  server: { certPath: string; keyPath: string };
  accessLog: string;
}): string {
  const temp = (name: string) => path.join(options.dir, 'temp', name);
  // A refused certificate ends the TLS-level check with 495 (invalid) or 496 (none sent), and nginx would answer
  // an HTML 400 that gRPC clients can only report as INTERNAL. A trailers-only answer (HEADERS that end the
  // stream, hence 204) carrying grpc-status 16 UNAUTHENTICATED is what a gRPC server itself would say.
  return `daemon off;
worker_processes 1;
pid ${path.join(options.dir, 'nginx.pid')};
error_log stderr notice;
events {
  worker_connections 512;
}
http {
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  log_format grpc '$remote_addr "$request" $status client-cert=$ssl_client_verify agent="$http_user_agent"';
  access_log ${options.accessLog} grpc;
  server {
    listen 127.0.0.1:${options.port} ssl http2;
    ssl_certificate ${options.server.certPath};
    ssl_certificate_key ${options.server.keyPath};
    ssl_client_certificate ${options.caPath};
    ssl_verify_client on;
    # Temporal payloads may exceed nginx's 1m default; a larger request would hang the client until its deadline.
    client_max_body_size 0;
    keepalive_requests ${KEEPALIVE_REQUESTS};
    keepalive_timeout ${GRPC_TIMEOUT};
    error_page 496 = @no_client_certificate;
    error_page 495 = @client_certificate_refused;
    location / {
      grpc_pass grpc://${options.upstream};
      grpc_read_timeout ${GRPC_TIMEOUT};
      grpc_send_timeout ${GRPC_TIMEOUT};
    }
    location @no_client_certificate {
      default_type application/grpc;
      add_header grpc-status 16 always;
      add_header grpc-message "client certificate required" always;
      return 204;
    }
    location @client_certificate_refused {
      default_type application/grpc;
      add_header grpc-status 16 always;
      add_header grpc-message "client certificate refused: $ssl_client_verify" always;
      return 204;
    }
  }
}
`;
}

function newKey(keyPath: string): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath];
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: OPENSSL_MS });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(error)}`);
  }
}

function nginxPath(): string {
  const found = NGINX_CANDIDATES.find((candidate) => existsSync(candidate));
  if (!found) throw new Error('nginx: not installed (stack/provision.sh installs Debian nginx-light)');
  return found;
}
