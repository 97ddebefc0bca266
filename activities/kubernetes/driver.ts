/**
 * Kubernetes target. Strategy: the Deployment controllers' rolling update, driven by server-side apply of a directory
 * of manifests. The rollback point is a revision Secret in the release's namespace holding every managed object as it
 * was; restore writes them back, so the previous ReplicaSet serves again and configuration returns exactly.
 */
import type { KubernetesTarget } from '../../domain/target.js';
import { resolveRegistryImage } from '../registry.js';
import type { TargetDriver } from '../targets/driver.js';
import { applyRelease } from './apply.js';
import { kubernetesPlan } from './content.js';
import { diffRelease } from './diff.js';
import { restoreRelease, verifyRelease } from './restore.js';
import { createRollbackPoint, keptRevisions, pruneRevisions } from './revisions.js';
import { awaitRollout } from './rollout.js';
import { dryRunRelease, inspectKubernetesEnvironment } from './validate.js';

export function kubernetesDriver(target: KubernetesTarget): TargetDriver {
  return {
    inspect: (dependsOn) => inspectKubernetesEnvironment(target, dependsOn),
    // No engine to ask: the registry's own HTTP API pins the image.
    resolveImage: (repository, version) => resolveRegistryImage(repository, version),
    dryRun: (image) => dryRunRelease(target, image),
    plan: (image) => kubernetesPlan(target, image),
    snapshot: (deploymentId) => createRollbackPoint(target, deploymentId),
    apply: (release) => applyRelease({ target, ...release }),
    awaitReady: (check) => awaitRollout(target, { timeoutMs: check.healthyWithin }),
    // Revisions are kept whatever happens; the release being replaced was captured by its own rollback point.
    restore: (to) => restoreRelease({ target, to }),
    verify: (expected) => verifyRelease(target, expected),
    diff: (from, to) => diffRelease(target, from, to),
    keptReleases: () => keptRevisions(target),
    prune: () => pruneRevisions(target),
  };
}
