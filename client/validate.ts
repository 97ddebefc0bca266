/** deploy-agent validate: a spec's offline checks, the same a deploy starts with; nothing is started. */
import { loadManifests, prepare } from '../activities/kubernetes/manifests.js';
import { InvalidInput, messageOf } from '../domain/failures.js';
import { resolveEnvironment } from '../domain/spec.js';
import { targetOf } from '../domain/target.js';
import { printLine } from './output.js';
import { loadSpecFile } from './spec-file.js';

// The release's image is resolved by a deploy; offline, a stand-in shows where it would go.
const PLACEHOLDER_DIGEST = `sha256:${'0'.repeat(64)}`;

export async function validateCommand(options: { file: string; env: string }): Promise<number> {
  const { spec, file } = await loadSpecFile(options.file);
  const environment = resolveEnvironment(spec, options.env, options.file);
  const target = targetOf(environment);
  let via: string;
  if (target.kind === 'kubernetes') {
    // The release's manifests are part of the input: read and checked here as a deploy's validation reads them.
    const objects = await loadManifests(target).catch((error: unknown) => {
      throw new InvalidInput(`${file}: release.manifests: ${messageOf(error)}`);
    });
    const image = { reference: `${target.imageRepository}@${PLACEHOLDER_DIGEST}`, digest: PLACEHOLDER_DIGEST };
    if (prepare(target, objects, image).imageUses === 0)
      throw new InvalidInput(
        `${file}: release.manifests: no container of the release uses the image repository ${target.imageRepository}`,
      );
    via = `Kubernetes namespace ${target.namespace}, ${objects.length} objects in ${target.manifestsDir}`;
  } else via = `Docker at ${target.host}`;
  printLine(`${file}: valid; ${environment.service} in ${environment.environment} via ${via}`);
  return 0;
}
