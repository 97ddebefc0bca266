/**
 * What a requester sends to start a deploy or a rollback. A workflow trusts none of it: it parses the request with
 * these schemas first, and the spec inside with the service spec's own schema.
 */
import { z } from 'zod';
import { credentialSchema } from './identity.js';
import { nameSchema, type ServiceEnvironment, versionSchema } from './spec.js';

const reasonSchema = z.string().max(2000);
const deploymentIdSchema = z.string().regex(/^[a-z0-9-]+\.[a-z0-9-]+\.[0-9a-f-]{36}$/, {
  error: 'expected a deployment id <service>.<environment>.<run id>',
});

const commonRequest = {
  /** The service spec as its author wrote it (paths made absolute): parsed by the workflow, not trusted. */
  spec: z.record(z.string(), z.unknown(), { error: 'expected the service spec' }),
  environment: nameSchema,
  reason: reasonSchema.optional(),
  credential: credentialSchema,
  /** Why a freeze window is overridden: only a break-glass principal may, and it is audited. */
  breakGlass: reasonSchema.min(1).optional(),
};

export const deployRequestSchema = z.strictObject({ ...commonRequest, version: versionSchema });
export type DeployRequest = z.infer<typeof deployRequestSchema>;

export const rollbackRequestSchema = z.strictObject({
  ...commonRequest,
  toDeploymentId: deploymentIdSchema.optional(),
});
export type RollbackRequest = z.infer<typeof rollbackRequestSchema>;

/** Requests of runs started before the platform policy: they carried their environment's settings themselves. */
export interface LegacyDeployRequest {
  target: ServiceEnvironment;
  version: string;
  requestedBy: string;
  reason?: string;
}

export interface LegacyRollbackRequest {
  target: ServiceEnvironment;
  toDeploymentId?: string;
  requestedBy: string;
  reason?: string;
}
