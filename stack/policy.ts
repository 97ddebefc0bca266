/** Platform policies the local stack writes for itself: the dev command's, the demo's and the tests'. */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { stringify } from 'yaml';
import { checkPolicy } from '../domain/policy.js';

/** Writes a policy after checking it, so a stack never starts a worker that would refuse its own policy. */
export async function writePolicy(file: string, policy: Record<string, unknown>): Promise<string> {
  const { problems } = checkPolicy(policy);
  if (problems.length) throw new Error(`policy for ${file} is invalid: ${JSON.stringify(problems)}`);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `# Written by deploy-agent for a local stack.\n${stringify(policy)}`);
  return file;
}

/** `deploy-agent dev`: names are not proven, the local Docker engine is the one environment. */
export function devPolicy(workDir: string): Record<string, unknown> {
  return {
    identity: { insecureDevMode: true },
    sourceRoots: [workDir],
    environments: {
      local: { docker: { host: 'unix:///var/run/docker.sock', ports: {} } },
    },
  };
}
