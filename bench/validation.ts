/**
 * Validation of a large Kubernetes release: the checks a deploy makes of its manifests before anything reaches the
 * cluster, timed beside the yaml package reading and parsing the same files (a floor: no checks at all).
 *
 * Measured, once each per run: loading (read, parse, object shape, names, namespace, duplicates, apply order), the
 * restore allowlist and quota amounts of environment inspection, image pinning, and the shipped security rules (read
 * and compiled as each check reads them, then evaluated over every container). Not measured: what needs a cluster
 * (served kinds, live objects, quotas, the plan's live state, and the server-side dry run, one request per object).
 * A deploy's validate phase loads the release once for each of its activities that reads it.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadManifests, prepare, refOf } from '../activities/kubernetes/manifests.js';
import { releaseAmounts } from '../activities/kubernetes/quota.js';
import { entryProblem } from '../activities/kubernetes/restorable.js';
import { evaluateRules } from '../activities/security/evaluate.js';
import { loadRuleSet } from '../activities/security/rules.js';
import type { KubernetesTarget } from '../domain/target.js';
import { type BenchSuite, formatMs, median, timed } from './measure.js';
import { BENCH_IMAGE_REPOSITORY, writeBenchRelease } from './validation-manifests.js';

const GOAL_MS = 2_000;
const DIGEST = `sha256:${'0'.repeat(64)}`;

interface Outcome {
  objects: number;
  containers: number;
  findings: number;
  problems: number;
}

/** The offline checks of one release, as the validation activities make them. */
async function validateRelease(target: KubernetesTarget): Promise<Outcome> {
  const manifests = await loadManifests(target);
  // Environment inspection: what restore could bring back, and what the release asks of quotas.
  const problems = manifests.filter((object) => entryProblem(target, { ...refOf(object), object })).length;
  const amounts = releaseAmounts(manifests, []);
  // The security check: the rules over the release as it would be applied, its image pinned.
  const image = { reference: `${target.imageRepository}@${DIGEST}`, digest: DIGEST };
  const { objects, imageUses } = prepare(target, manifests, image);
  if (imageUses === 0) throw new Error('the benchmark release does not use its image repository');
  const rules = await loadRuleSet([]);
  const namespaceObject = {
    metadata: { name: target.namespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } },
  };
  const findings = evaluateRules(
    rules,
    { kind: 'kubernetes', objects, namespaceObject },
    { protected: true, overrides: {} },
  );
  const containers = objects.reduce((n, o) => n + (o.kind === 'Deployment' ? 2 : 0), 0);
  return {
    objects: objects.length,
    containers,
    findings: findings.length,
    problems: problems + amounts.problems.length,
  };
}

/** The floor: every file read at once and parsed into plain values by the yaml package, nothing checked. */
async function parseOnly(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  const files = entries.filter((e) => e.isFile() && e.name.endsWith('.yaml'));
  const texts = await Promise.all(files.map((e) => readFile(path.join(e.parentPath, e.name), 'utf8')));
  let documents = 0;
  for (const text of texts) for (const document of parseAllDocuments(text)) if (document.toJS() !== null) documents++;
  return documents;
}

export const validationSuite: BenchSuite = async (options) => {
  const size = options.smoke ? 60 : 5_000;
  const dir = path.join(options.workDir, 'release');
  try {
    const files = await writeBenchRelease(dir, size);
    const target: KubernetesTarget = {
      kind: 'kubernetes',
      service: 'bench-shop',
      environment: 'bench',
      namespace: 'bench',
      manifestsDir: dir,
      imageRepository: BENCH_IMAGE_REPOSITORY,
      historyLimit: 1,
      fieldManager: 'deploy-agent',
    };
    // Once each untimed, so both sides run compiled code on files in the page cache, as a worker does.
    const outcome = await validateRelease(target);
    const documents = await parseOnly(dir);
    if (outcome.objects !== size || documents !== size)
      throw new Error(`expected ${size} objects, the agent loaded ${outcome.objects} and the parser ${documents}`);
    if (outcome.findings || outcome.problems)
      throw new Error(`the benchmark release should pass: ${outcome.findings} findings, ${outcome.problems} problems`);
    const agent: number[] = [];
    const raw: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      agent.push((await timed(() => validateRelease(target))).ms);
      raw.push((await timed(() => parseOnly(dir))).ms);
    }
    const agentMs = median(agent);
    const rawMs = median(raw);
    return [
      {
        operation: `validate ${size.toLocaleString('en-US')} manifests (offline checks)`,
        agent: formatMs(agentMs),
        raw: formatMs(rawMs),
        ratio: agentMs / rawMs,
        // The goal is for 5,000 manifests; a smoke run's figure says nothing about it.
        ...(options.smoke ? {} : { goal: `< ${formatMs(GOAL_MS)}`, met: agentMs < GOAL_MS }),
        notes:
          `${files.toLocaleString('en-US')} files, ${outcome.containers.toLocaleString('en-US')} containers, one ` +
          `pass: read, parse, names, namespace, duplicates, restore allowlist, quota, image pinning, 11 security ` +
          `rules; not measured: the cluster's checks and server-side dry run (a request per object); raw: the yaml ` +
          `package alone reading and parsing the same files, a floor with no checks`,
      },
    ];
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};
