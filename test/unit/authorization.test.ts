import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { refuseRequester, refuseVote, type VotingContext } from '../../domain/authorization.js';
import { parseSpec } from '../../domain/spec.js';

const open: VotingContext = {
  open: true,
  phase: 'approval',
  environment: 'production',
  requestedBy: 'ci-bot',
  approvers: ['alice', 'bob', 'ci-bot'],
  votes: [],
};

describe('approval authorization', () => {
  it('counts a vote from an allowed approver', () => {
    assert.equal(refuseVote(open, { approver: 'alice', decision: 'approve' }), undefined);
  });
  it('refuses votes outside the approval phase', () => {
    assert.match(
      refuseVote({ ...open, open: false, phase: 'apply' }, { approver: 'alice', decision: 'approve' }) ?? '',
      /not awaiting approval \(current phase: apply\)/,
    );
  });
  it('refuses approvers not allowed in the environment', () => {
    assert.match(
      refuseVote(open, { approver: 'mallory', decision: 'approve' }) ?? '',
      /mallory may not approve in production/,
    );
  });
  it('refuses the requester approving their own deployment', () => {
    assert.match(refuseVote(open, { approver: 'ci-bot', decision: 'approve' }) ?? '', /requested this deployment/);
  });
  it('refuses a second vote by the same person', () => {
    const votes = [{ approver: 'alice', decision: 'approve' as const, at: '', via: 'update' as const }];
    assert.match(refuseVote({ ...open, votes }, { approver: 'alice', decision: 'reject' }) ?? '', /already voted/);
  });
  it('restricts who may deploy to an environment', () => {
    const spec = parseSpec(
      {
        service: 'web',
        target: 'docker',
        image: { repository: 'r/web' },
        environments: {
          prod: { docker: { host: 'unix:///x', hostPort: 1 }, deployers: ['ci-bot'] },
          dev: { docker: { host: 'unix:///x', hostPort: 2 } },
        },
      },
      'deploy.yaml',
    );
    assert.equal(refuseRequester('prod', spec.environments.prod!, 'ci-bot'), undefined);
    assert.match(refuseRequester('prod', spec.environments.prod!, 'eve') ?? '', /eve may not deploy to prod/);
    assert.equal(refuseRequester('dev', spec.environments.dev!, 'eve'), undefined);
  });
});
