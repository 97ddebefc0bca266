import { userInfo } from 'node:os';

/** Where the CLI finds Temporal and who it acts as; the same variables the Temporal CLI reads. */
export const settings = {
  address: () => process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233',
  namespace: () => process.env.TEMPORAL_NAMESPACE ?? 'default',
  uiUrl: () => process.env.TEMPORAL_UI_URL ?? 'http://127.0.0.1:8233',
  identity: () => process.env.DEPLOY_AGENT_USER ?? userInfo().username,
};

export function workflowLink(workflowId: string, runId: string): string {
  const ns = encodeURIComponent(settings.namespace());
  return `${settings.uiUrl()}/namespaces/${ns}/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
}
