/**
 * `deploy-agent codec-server`: serves the codec protocol for the Temporal Web UI and CLI. Its identity settings and
 * readers come from the platform policy (--policy or DEPLOY_AGENT_POLICY), its keys from DEPLOY_AGENT_KEYS_FILE or
 * DEPLOY_AGENT_KEYS; it runs until interrupted.
 */
import { readFileSync } from 'node:fs';
import { loadPolicyFile } from '../activities/policy.js';
import { startCodecServer } from '../codec/server.js';
import { InvalidInput } from '../domain/failures.js';
import { keyRingFromEnv } from '../keys/key-ring.js';
import { untilInterrupted } from '../worker/main.js';
import { printLine } from './output.js';

export interface CodecServerOptions {
  port: string;
  host: string;
  allowOrigin?: string[];
  policy?: string;
  tlsCert?: string;
  tlsKey?: string;
}

export async function codecServerCommand(options: CodecServerOptions): Promise<number> {
  const keyRing = keyRingFromEnv();
  const policyFile = options.policy ?? process.env.DEPLOY_AGENT_POLICY;
  if (!policyFile) throw new InvalidInput('no platform policy: pass --policy FILE or set DEPLOY_AGENT_POLICY');
  const { policy } = await loadPolicyFile(policyFile);
  const port = Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new InvalidInput(`--port ${options.port}: expected a port number`);
  if (!policy.identity.oidc)
    throw new InvalidInput(`${policyFile}: identity.oidc: the codec server needs an OpenID provider to verify readers`);
  if (Boolean(options.tlsCert) !== Boolean(options.tlsKey))
    throw new InvalidInput('--tls-cert and --tls-key go together');
  const tls =
    options.tlsCert && options.tlsKey
      ? { cert: readFile(options.tlsCert, '--tls-cert'), key: readFile(options.tlsKey, '--tls-key') }
      : undefined;
  const server = await startCodecServer(
    {
      keyRing,
      identity: policy.identity,
      readers: policy.payloadReaders,
      allowOrigins: options.allowOrigin ?? [],
      tls,
      log: (line) => process.stderr.write(`${line}\n`),
    },
    port,
    options.host,
  );
  printLine(`codec server listening on ${server.url} (readers: ${policy.payloadReaders.join(', ') || 'nobody'})`);
  await untilInterrupted();
  await server.close();
  return 0;
}

function readFile(file: string, option: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new InvalidInput(`${option} ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
