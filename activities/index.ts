import * as docker from './docker.js';
import { trackChanges } from './git.js';
import { awaitHealthy } from './health.js';
import { reportActivities } from './reports.js';

export interface ActivityDependencies {
  reportsDir: string;
}

export function createActivities({ reportsDir }: ActivityDependencies) {
  return {
    inspectDockerEnvironment: docker.inspectDockerEnvironment,
    resolveImage: docker.resolveImage,
    snapshotRelease: docker.snapshotRelease,
    applyRelease: docker.applyRelease,
    pruneHistory: docker.pruneHistory,
    findKeptRelease: docker.findKeptRelease,
    restoreRelease: docker.restoreRelease,
    verifyRelease: docker.verifyRelease,
    awaitHealthy,
    trackChanges,
    ...reportActivities(reportsDir),
  };
}

export type Activities = ReturnType<typeof createActivities>;
