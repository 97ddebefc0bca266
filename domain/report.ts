import type { DeploymentStatus, PhaseRecord } from './deployment.js';
import { formatDuration } from './duration.js';
import { planLines } from './plan.js';

function elapsedMs(phase: PhaseRecord): number | undefined {
  return phase.endedAt ? Date.parse(phase.endedAt) - Date.parse(phase.startedAt) : undefined;
}

export function phaseLine(phase: PhaseRecord): string {
  const took = elapsedMs(phase);
  const budget = phase.budgetMs === undefined ? undefined : formatDuration(phase.budgetMs);
  const timing =
    took === undefined
      ? budget
        ? ` (budget ${budget})`
        : ''
      : ` (${formatDuration(took)}${budget ? ` of ${budget} budget` : ''})`;
  return `${phase.name}: ${phase.status}${timing}${phase.detail ? ` - ${phase.detail}` : ''}`;
}

/** The human report of a deploy or rollback: change log, timings against budgets, approvals, errors, rollback. */
export function renderReport(status: DeploymentStatus): string {
  const lines: string[] = [];
  const title =
    status.kind === 'deploy' ? `Deploy of ${status.service} ${status.version ?? ''}` : `Rollback of ${status.service}`;
  lines.push(`# ${title.trim()} to ${status.environment}: ${status.state}`, '');
  if (status.unverifiedIdentities)
    lines.push(
      '> **Insecure development mode:** the identities in this report are names nobody proved; the worker accepted',
      '> them without a token. Never run a worker like this for a real environment.',
      '',
    );
  lines.push(`- Deployment: ${status.deploymentId}`);
  lines.push(`- Requested by: ${status.requestedBy}${status.reason ? ` (${status.reason})` : ''}`);
  lines.push(`- Started: ${status.startedAt}${status.finishedAt ? `, finished: ${status.finishedAt}` : ''}`);
  if (status.previous?.present)
    lines.push(`- Previous release: ${status.previous.version ?? '?'} (${status.previous.imageDigest ?? '?'})`);
  if (status.image) lines.push(`- Image: ${status.image.reference}`);
  if (status.policyHash) lines.push(`- Platform policy: sha256 ${status.policyHash}`);
  lines.push('', '## Phases', ...status.phases.map((p) => `- ${phaseLine(p)}`));
  if (status.checks.length) {
    lines.push('', '## Validation');
    for (const c of status.checks) lines.push(`- [${c.passed ? 'x' : ' '}] ${c.check}: ${c.detail}`);
  }
  if (status.plan) lines.push('', '## Plan (validated content)', ...planLines(status.plan));
  if (status.securityFindings?.length) {
    lines.push('', '## Security findings');
    for (const f of status.securityFindings)
      lines.push(`- ${f.action === 'deny' ? 'DENIED' : 'warning'} ${f.rule}: ${f.object} ${f.field}: ${f.message}`);
  }
  if (status.approval) {
    const a = status.approval;
    lines.push('', `## Approval (${a.required} required${a.deadline ? `, deadline ${a.deadline}` : ''})`);
    for (const v of a.votes)
      lines.push(`- ${v.decision} by ${v.approver} at ${v.at} via ${v.via}${v.comment ? `: ${v.comment}` : ''}`);
    for (const r of a.refused)
      lines.push(`- refused ${r.decision} from ${r.approver} at ${r.at} via ${r.via}: ${r.reason}`);
    if (!a.votes.length && !a.refused.length) lines.push('- no votes');
  }
  if (status.changes) {
    const c = status.changes;
    lines.push('', `## Changes ${c.fromRef ?? '(start)'}..${c.toRef}`);
    if (c.note) lines.push(`_${c.note}_`);
    for (const commit of c.commits)
      lines.push(`- ${commit.hash.slice(0, 10)} ${commit.subject} (${commit.author}, ${commit.date})`);
    if (c.truncated) lines.push('- ... (truncated)');
    if (c.files.length) lines.push('', 'Files:', ...c.files.map((f) => `- ${f.path} ${f.change}`));
    if (c.moreFiles) lines.push(`- ... and ${c.moreFiles} more files`);
  }
  if (status.objectChanges) {
    const d = status.objectChanges;
    lines.push('', `## Object changes (${d.unchanged} unchanged)`);
    for (const name of d.added) lines.push(`- added ${name}`);
    for (const c of d.changed) lines.push(`- changed ${c.object}: ${c.fields.join(', ')}`);
    for (const name of d.removed) lines.push(`- removed ${name}`);
    if (status.rollback?.consistency?.consistent)
      lines.push('- all of these were reverted by the rollback (added objects deleted, changed ones restored)');
  }
  if (status.rollback) {
    const r = status.rollback;
    lines.push('', '## Rollback', `- Reason: ${r.reason}`, `- Attempts: ${r.attempts}`);
    lines.push(
      `- Restored to: ${r.restoredTo.present ? `${r.restoredTo.version ?? '?'} (${r.restoredTo.imageDigest ?? '?'})` : 'nothing (first deployment)'}`,
    );
    if (r.consistency) {
      lines.push(`- Consistency: ${r.consistency.consistent ? 'verified' : 'NOT consistent'}`);
      for (const c of r.consistency.checks)
        lines.push(`  - ${c.field}: ${c.equal ? 'equal' : `expected ${c.expected}, found ${c.actual}`}`);
    }
    for (const e of r.errors) lines.push(`- Error: ${e}`);
    for (const d of r.operatorDecisions)
      lines.push(`- Operator ${d.operator} chose ${d.action} at ${d.at}${d.reason ? `: ${d.reason}` : ''}`);
  }
  if (status.audit?.length) {
    lines.push('', '## Audit');
    for (const e of status.audit) lines.push(`- ${e.at} ${e.action} ${e.outcome}: ${e.actor} - ${e.reason}`);
  }
  if (status.errors.length) lines.push('', '## Errors', ...status.errors.map((e) => `- ${e}`));
  return `${lines.join('\n')}\n`;
}
