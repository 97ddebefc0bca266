import { trackChanges } from './git.js';
import { reportActivities } from './reports.js';
import * as targets from './targets/index.js';

export interface ActivityDependencies {
  reportsDir: string;
}

export function createActivities({ reportsDir }: ActivityDependencies) {
  return { ...targets, trackChanges, ...reportActivities(reportsDir) };
}

export type Activities = ReturnType<typeof createActivities>;
