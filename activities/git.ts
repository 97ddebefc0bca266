import { simpleGit } from 'simple-git';
import type { ChangeSet } from '../domain/release.js';
import { fail, messageOf } from '../domain/failures.js';

const MAX_COMMITS = 200;
const MAX_FILES = 500;

export interface ChangeQuery {
  repository: string;
  refPattern: string;
  fromVersion?: string;
  toVersion: string;
}

const refOf = (pattern: string, version: string) => pattern.replaceAll('{version}', version);

/** Change identification: the commits and files between the deployed version and the requested one. */
export async function trackChanges({
  repository,
  refPattern,
  fromVersion,
  toVersion,
}: ChangeQuery): Promise<ChangeSet> {
  const git = simpleGit({ baseDir: repository, timeout: { block: 20_000 } });
  const toRef = refOf(refPattern, toVersion);
  const fromRef = fromVersion === undefined ? undefined : refOf(refPattern, fromVersion);
  // With --quiet a missing ref answers nothing and exits 1 without a message, which simple-git does not raise.
  const resolve = async (ref: string, version: string) => {
    let hash = '';
    let why = 'no such commit';
    try {
      hash = (await git.revparse(['--verify', '--quiet', `${ref}^{commit}`])).trim();
    } catch (error) {
      why = messageOf(error);
    }
    if (!hash) throw fail('invalid', `git ref ${ref} (version ${version}) was not found in ${repository}: ${why}`);
    return hash;
  };
  const to = await resolve(toRef, toVersion);
  const from =
    fromRef === undefined || fromVersion === undefined
      ? undefined
      : await resolve(fromRef, fromVersion).catch(() => undefined);
  const range = from ? [`${from}..${to}`] : [to];
  const log = await git.log([...range, `--max-count=${MAX_COMMITS + 1}`]);
  const commits = log.all.slice(0, MAX_COMMITS).map((c) => ({
    hash: c.hash,
    author: c.author_name,
    date: c.date,
    subject: c.message,
  }));
  const changed = from ? (await git.diffSummary([from, to])).files : [];
  const files = changed.slice(0, MAX_FILES).map((f) => ({
    path: f.file,
    change:
      'binary' in f && f.binary
        ? 'binary'
        : `+${'insertions' in f ? f.insertions : 0} -${'deletions' in f ? f.deletions : 0}`,
  }));
  let note: string | undefined;
  if (fromVersion === undefined) note = 'first deployment to this environment: history up to the requested version';
  else if (!from)
    note = `the deployed version's ref ${fromRef} is not in the repository: history up to the requested version`;
  else if (commits.length === 0) note = 'no commits between the deployed and the requested version';
  return {
    fromVersion,
    toVersion,
    fromRef,
    toRef,
    commits,
    files,
    moreFiles: changed.length > MAX_FILES ? changed.length - MAX_FILES : undefined,
    truncated: log.all.length > MAX_COMMITS,
    note,
  };
}
