/** The names of a release's containers: pure, so the CLI can use them without loading the Docker client. */
import type { DockerTarget } from '../../domain/target.js';

export type Named = Pick<DockerTarget, 'service' | 'environment'>;

/** The live container: `_` occurs in neither name, so each service and environment has a name of its own. */
export const activeName = (target: Named): string => `${target.service}_${target.environment}`;
/** A kept rollback point: the live name, `.kept-` and the end of its deployment id (or container id). */
export const keptName = (target: Named, deploymentOrId: string): string =>
  `${activeName(target)}.kept-${deploymentOrId.slice(-12).replace(/[^a-zA-Z0-9_.-]/g, '-')}`;
/** The live container's name before it had a separator of its own; found only when labelled for this target. */
export const legacyName = (target: Named): string => `${target.service}-${target.environment}`;
