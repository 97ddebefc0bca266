import { trackChanges } from './git.js';
import { verifyCredential } from './identity.js';
import { policyActivities } from './policy.js';
import { reportActivities } from './reports.js';
import { securityActivities } from './security/index.js';
import * as targets from './targets/index.js';

export interface ActivityDependencies {
  reportsDir: string;
  /** The platform policy file: environments, credentials, who may do what. */
  policyFile: string;
}

export function createActivities({ reportsDir, policyFile }: ActivityDependencies) {
  return {
    ...targets,
    trackChanges,
    verifyCredential,
    ...policyActivities(policyFile),
    ...securityActivities(policyFile),
    ...reportActivities(reportsDir),
  };
}

export type Activities = ReturnType<typeof createActivities>;
