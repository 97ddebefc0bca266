/**
 * deploy-agent validate: a service spec's offline checks, the same a deploy's admission starts with; nothing is
 * started. Whether an environment accepts the service is the platform policy's to say, on the worker.
 */
import { loadManifests, prepare } from '../activities/kubernetes/manifests.js';
import { offlineFindings } from '../activities/security/offline.js';
import { loadRuleSet } from '../activities/security/rules.js';
import { InvalidInput, messageOf } from '../domain/failures.js';
import { describeFinding } from '../domain/security.js';
import type { KubernetesTarget } from '../domain/target.js';
import { printLine } from './output.js';
import { loadSpecFile } from './spec-file.js';

// The release's image is resolved by a deploy; offline, a stand-in shows where it would go.
const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;

export async function validateCommand(options: { file: string }): Promise<number> {
  const { spec, file } = await loadSpecFile(options.file);
  let via = 'Docker';
  if (spec.target === 'kubernetes' && spec.release) {
    // The namespace is the policy's; the manifests must hold without one.
    const target: KubernetesTarget = {
      kind: 'kubernetes',
      service: spec.service,
      environment: 'validate',
      namespace: 'default',
      manifestsDir: spec.release.manifests,
      imageRepository: spec.image.repository,
      historyLimit: 1,
      fieldManager: 'deploy-agent',
    };
    const objects = await loadManifests(target).catch((error: unknown) => {
      throw new InvalidInput(`${file}: release.manifests: ${messageOf(error)}`);
    });
    const image = { reference: `${target.imageRepository}@${PLACEHOLDER_DIGEST}`, digest: PLACEHOLDER_DIGEST };
    if (prepare(target, objects, image).imageUses === 0)
      throw new InvalidInput(
        `${file}: release.manifests: no container of the release uses the image repository ${target.imageRepository}`,
      );
    via = `Kubernetes, ${objects.length} objects in ${target.manifestsDir}`;
  }
  printLine(`${file}: valid; ${spec.service} via ${via}`);
  // What the security rules would say; the worker's policy decides each rule's action per environment.
  for (const finding of offlineFindings(await loadRuleSet([]), spec))
    printLine(
      `${file}: security: ${describeFinding(finding)} (${finding.action} in protected environments by default)`,
    );
  return 0;
}
