import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { loadClientConfigProfile, toClientOptions, type ClientConfigProfile } from '@temporalio/envconfig';
import { InvalidInput, messageOf } from '../domain/failures.js';

type ConnectionOptions = ReturnType<typeof toClientOptions>['connectionOptions'];

/** Where a fresh `temporal server start-dev` listens, for a machine where nothing is configured. */
const DEFAULT_ADDRESS = '127.0.0.1:7233';
const DEFAULT_NAMESPACE = 'default';

/**
 * How to reach Temporal, resolved the way every Temporal tool resolves it (`@temporalio/envconfig`): a profile of a
 * temporal.toml (TEMPORAL_CONFIG_FILE, else the user's config directory; TEMPORAL_PROFILE, else `default`), then the
 * TEMPORAL_* variables over it. Both clients use it: the CLI's Connection and the worker's NativeConnection.
 */
export interface TemporalConnectionSettings {
  address: string;
  namespace: string;
  tls: ConnectionOptions['tls'];
  apiKey: string | undefined;
  metadata: ConnectionOptions['metadata'];
  /** The profile as configured, before the certificate files were read: for messages that name them. */
  profile: ClientConfigProfile;
}

/** Read anew on every call: the demo points TEMPORAL_ADDRESS at the server it has just started. */
export function connectionSettings(): TemporalConnectionSettings {
  const profile = temporalProfile();
  // Reads the certificate and key files the profile names.
  const { connectionOptions, namespace } = configured(() => toClientOptions(profile));
  return {
    address: connectionOptions.address || DEFAULT_ADDRESS,
    namespace: namespace || DEFAULT_NAMESPACE,
    tls: connectionOptions.tls,
    apiKey: connectionOptions.apiKey,
    metadata: connectionOptions.metadata,
    profile,
  };
}

function temporalProfile(): ClientConfigProfile {
  const file = process.env.TEMPORAL_CONFIG_FILE;
  // envconfig takes a missing file for an empty one, which would quietly drop every setting the user meant to give.
  if (file && !existsSync(file)) throw new InvalidInput(`TEMPORAL_CONFIG_FILE: ${file} does not exist`);
  return configured(() => loadClientConfigProfile());
}

function configured<T>(load: () => T): T {
  try {
    return load();
  } catch (error) {
    const file = process.env.TEMPORAL_CONFIG_FILE;
    const where = file ? ` (TEMPORAL_CONFIG_FILE ${file})` : '';
    throw new InvalidInput(`Temporal connection settings${where}: ${messageOf(error)}`);
  }
}

/** Where the CLI finds Temporal and who it acts as; the same variables and profiles the Temporal CLI reads. */
export const settings = {
  address: () => temporalProfile().address || DEFAULT_ADDRESS,
  namespace: () => temporalProfile().namespace || DEFAULT_NAMESPACE,
  uiUrl: () => process.env.TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233',
  identity: () => process.env.DEPLOY_AGENT_USER ?? userInfo().username,
};

export function workflowLink(workflowId: string, runId: string): string {
  const ns = encodeURIComponent(settings.namespace());
  return `${settings.uiUrl()}/namespaces/${ns}/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
}
