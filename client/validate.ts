/** deploy-agent validate: a spec's offline checks, the same a deploy starts with; nothing is started. */
import { resolveEnvironment } from '../domain/spec.js';
import { printLine } from './output.js';
import { loadSpecFile } from './spec-file.js';

export async function validateCommand(options: { file: string; env: string }): Promise<number> {
  const { spec, file } = await loadSpecFile(options.file);
  const target = resolveEnvironment(spec, options.env, options.file);
  const via = target.settings.docker
    ? `Docker at ${target.settings.docker.host}`
    : `Kubernetes namespace ${target.settings.kubernetes?.namespace ?? '?'}`;
  printLine(`${file}: valid; ${target.service} in ${target.environment} via ${via}`);
  return 0;
}
