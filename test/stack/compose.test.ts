import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

const COMPOSE_FILE = fileURLToPath(new URL('../../../temporal-docker-compose.yml', import.meta.url));

describe('temporal-docker-compose.yml', () => {
  it('is a valid compose file (docker-compose config)', async () => {
    const { stdout } = await promisify(execFile)('docker-compose', ['-f', COMPOSE_FILE, 'config'], {
      timeout: 60_000,
      env: { ...process.env, DEPLOY_AGENT_KEYS_FILE: '/srv/deploy-agent/keys.json' },
    });
    const config = parse(stdout) as {
      services: Record<string, { environment?: Record<string, string>; volumes?: unknown[] }>;
    };
    assert.deepEqual(Object.keys(config.services).sort(), [
      'deploy-agent-codec',
      'deploy-agent-worker',
      'postgresql',
      'search-attributes',
      'temporal',
      'temporal-ui',
    ]);
    const worker = config.services['deploy-agent-worker'];
    assert.equal(worker?.environment?.TEMPORAL_ADDRESS, 'temporal:7233');
    // The worker refuses to start without a platform policy: the file gives it one, mounted read-only.
    assert.equal(worker?.environment?.DEPLOY_AGENT_POLICY, '/etc/deploy-agent/policy.yaml');
    assert.ok(
      JSON.stringify(worker?.volumes ?? []).includes('/etc/deploy-agent/policy.yaml'),
      JSON.stringify(worker?.volumes),
    );
    // Nor without its payload keys: mounted read-only, named by DEPLOY_AGENT_KEYS_FILE.
    for (const name of ['deploy-agent-worker', 'deploy-agent-codec']) {
      const service = config.services[name];
      assert.equal(service?.environment?.DEPLOY_AGENT_KEYS_FILE, '/etc/deploy-agent/keys.json', name);
      assert.ok(JSON.stringify(service?.volumes ?? []).includes('/etc/deploy-agent/keys.json'), name);
    }
  });
});
