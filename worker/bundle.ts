/**
 * The workflow bundle. `npm run build` writes it once (worker/build-bundle.ts), so a worker starts without bundling the
 * workflows, which costs seconds; without a current prebuilt bundle a worker bundles them itself when it starts.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const workflowsPath = fileURLToPath(new URL('../workflows/index.js', import.meta.url));
export const workflowBundlePath = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));

/** The compiled code the bundle is made of: the workflows, the domain model they import and the payload converter. */
const BUNDLED_DIRS = ['../workflows/', '../domain/', '../codec/'].map((dir) =>
  fileURLToPath(new URL(dir, import.meta.url)),
);

/**
 * The prebuilt bundle, if there is one and no workflow or domain file was compiled after it (as when tsc ran alone,
 * without `npm run build`): a stale bundle would run old workflow code.
 */
export async function prebuiltWorkflowBundle(): Promise<{ codePath: string } | undefined> {
  const built = await stat(workflowBundlePath).catch(() => undefined);
  if (!built) return undefined;
  for (const dir of BUNDLED_DIRS) {
    const files = await readdir(dir, { recursive: true }).catch(() => []);
    for (const file of files) {
      if (!file.endsWith('.js')) continue;
      const compiled = await stat(join(dir, file)).catch(() => undefined);
      if (compiled && compiled.mtimeMs > built.mtimeMs) return undefined;
    }
  }
  return { codePath: workflowBundlePath };
}
