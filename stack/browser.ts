// Debian's chromium (stack/provision-ui.sh) for tests that drive the Temporal Web UI. A test CA is trusted the way a
// user's machine would trust a company CA, through an NSS database, never by turning certificate checks off.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CERTUTIL_MS = 30_000;
const PROVISION_HINT = 'run `bash stack/provision-ui.sh` first';

/** /usr/bin/chromium, or a clear error naming the provisioning script. */
export function chromiumPath(): string {
  const candidate = '/usr/bin/chromium';
  try {
    accessSync(candidate, constants.X_OK);
    return candidate;
  } catch {
    throw new Error(`chromium is not installed (looked at ${candidate}); ${PROVISION_HINT}`);
  }
}

/**
 * A HOME for chromium whose NSS database (`$HOME/.pki/nssdb`, where chromium on Linux reads its trust) trusts each CA
 * of `caPaths` to identify servers. Start chromium with HOME set to it.
 */
export async function homeTrusting(dir: string, caPaths: string[]): Promise<string> {
  const nssdb = path.join(dir, '.pki', 'nssdb');
  await mkdir(nssdb, { recursive: true, mode: 0o700 });
  const database = `sql:${nssdb}`;
  await certutil(['-d', database, '-N', '--empty-password']);
  for (const [index, caPath] of caPaths.entries())
    await certutil(['-d', database, '-A', '-t', 'C,,', '-n', `test-ca-${index}`, '-i', caPath]);
  return dir;
}

async function certutil(args: string[]): Promise<void> {
  try {
    await run('certutil', args, { timeout: CERTUTIL_MS });
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    if (code === 'ENOENT') throw new Error(`certutil is not installed; ${PROVISION_HINT}`);
    throw new Error(`certutil ${args.join(' ')} failed: ${stderr?.trim() || String(error)}`);
  }
}
