import type { ServiceEnvironment } from './spec.js';

export interface DeployRequest {
  target: ServiceEnvironment;
  version: string;
  requestedBy: string;
  reason?: string;
}

export interface RollbackRequest {
  target: ServiceEnvironment;
  /** A deployment whose release to bring back; the previous release when absent. */
  toDeploymentId?: string;
  requestedBy: string;
  reason?: string;
}
