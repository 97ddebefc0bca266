/**
 * Change tracking over a long range: the agent's change set between two tags of a real repository, beside
 * `git log --name-status` over the same range. They do not do the same work: git lists every commit with the files
 * it touched, the agent lists the first commits up to its cap and the files changed across the whole range.
 */
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { trackChanges } from '../activities/git.js';
import { FIRST_TAG, LAST_TAG, writeBenchHistory } from './change-tracking-repository.js';
import { type BenchSuite, formatMs, median, timed } from './measure.js';

/** Runs git and counts the bytes it prints, which are not kept: tens of megabytes for a long range. */
function gitOutputBytes(repository: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const git = spawn('git', args, { cwd: repository, stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let errors = '';
    git.stdout.on('data', (chunk: Buffer) => (bytes += chunk.length));
    git.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    git.on('error', reject);
    git.on('close', (code) =>
      code === 0 ? resolve(bytes) : reject(new Error(`git ${args.join(' ')} exited with ${code}: ${errors.trim()}`)),
    );
  });
}

export const changeTrackingSuite: BenchSuite = async (options) => {
  // Commits in the range; the tag it starts from is one more.
  const commits = options.smoke ? 300 : 10_000;
  const repository = path.join(options.workDir, 'repository');
  try {
    await writeBenchHistory(repository, commits + 1);
    const query = { repository, refPattern: 'v{version}', fromVersion: '1.0.0', toVersion: '2.0.0' };
    const rawArgs = ['log', '--name-status', `${FIRST_TAG}..${LAST_TAG}`];
    // Once each untimed: the first pass reads the packs from disk for both.
    const changes = await trackChanges(query);
    await gitOutputBytes(repository, rawArgs);
    if (changes.commits.length === 0 || changes.files.length === 0)
      throw new Error(`the agent found no changes between ${FIRST_TAG} and ${LAST_TAG}`);
    const agent: number[] = [];
    const raw: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      agent.push((await timed(() => trackChanges(query))).ms);
      raw.push((await timed(() => gitOutputBytes(repository, rawArgs))).ms);
    }
    const agentMs = median(agent);
    const rawMs = median(raw);
    const count = (n: number) => n.toLocaleString('en-US');
    const listed = changes.truncated
      ? `the agent lists the first ${count(changes.commits.length)} of ${count(commits)} commits (truncated)`
      : `the agent lists all ${count(changes.commits.length)} commits`;
    return [
      {
        operation: `track changes over ${count(commits)} commits`,
        agent: formatMs(agentMs),
        raw: formatMs(rawMs),
        ratio: agentMs / rawMs,
        notes:
          `${listed} and ${count(changes.files.length)} of ${count(changes.files.length + (changes.moreFiles ?? 0))} ` +
          `files changed across the range (one diff); ` +
          `raw: git log --name-status, every commit with its files`,
      },
    ];
  } finally {
    await rm(repository, { recursive: true, force: true });
  }
};
