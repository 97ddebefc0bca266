import { randomBytes } from 'node:crypto';

/**
 * The test process's key ring, in DEPLOY_AGENT_KEYS: in-process activities read it from the environment, and the
 * workers and CLIs a test spawns get it through the environment this returns. Random per test process.
 */
export function testKeysEnv(): { DEPLOY_AGENT_KEYS: string } {
  process.env.DEPLOY_AGENT_KEYS ??= JSON.stringify({
    current: 'test',
    keys: { test: randomBytes(32).toString('base64') },
  });
  return { DEPLOY_AGENT_KEYS: process.env.DEPLOY_AGENT_KEYS };
}
