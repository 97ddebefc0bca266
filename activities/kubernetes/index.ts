/**
 * Kubernetes target. Strategy: the Deployment controllers' rolling update, driven by server-side apply of a directory
 * of manifests. The rollback point is a revision Secret in the release's namespace holding every managed object as it
 * was; restore writes them back, so the previous ReplicaSet serves again and configuration returns exactly.
 */
export { applyRelease, type KubernetesApplyRequest } from './apply.js';
export { createRollbackPoint, findRevision } from './revisions.js';
export { awaitRollout, type Progress, type RolloutOptions } from './rollout.js';
export { diffRelease, restoreRelease, verifyRelease, type KubernetesRestoreRequest } from './restore.js';
export { dryRunRelease, inspectKubernetesEnvironment, type KubernetesEnvironmentReport } from './validate.js';
