import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  judgeFreeze,
  refuseRequester,
  refuseResolver,
  refuseVote,
  type VotingContext,
} from '../../domain/authorization.js';
import type { Vote } from '../../domain/deployment.js';
import type { Identity } from '../../domain/identity.js';
import { type EnvironmentPolicy, environmentPolicySchema } from '../../domain/policy.js';

const who = (user: string, groups: string[] = [], tokenId?: string): Identity => ({
  user,
  groups,
  proof: 'oidc',
  tokenId,
});

function environment(policy: Record<string, unknown> = {}): EnvironmentPolicy {
  return environmentPolicySchema.parse({ docker: { host: 'unix:///x' }, ...policy });
}

const open: VotingContext = {
  open: true,
  phase: 'approval',
  environment: 'production',
  requestedBy: who('ci-bot', ['ci']),
  approvers: ['alice', 'bob', 'group:release-managers'],
  votes: [],
  usedTokenIds: [],
};

describe('approval authorization', () => {
  it('counts a vote from an allowed approver', () => {
    assert.equal(refuseVote(open, who('alice', [], 'jti-1'), 'approve'), undefined);
    assert.equal(refuseVote(open, who('bob'), 'reject'), undefined);
  });

  it('counts a vote from a member of an approving group, with or without a leading slash', () => {
    assert.equal(refuseVote(open, who('carol', ['release-managers']), 'approve'), undefined);
    assert.equal(refuseVote(open, who('carol', ['/release-managers']), 'approve'), undefined);
  });

  it('refuses votes outside the approval phase', () => {
    assert.match(
      refuseVote({ ...open, open: false, phase: 'apply' }, who('alice'), 'approve') ?? '',
      /not awaiting approval \(current phase: apply\)/,
    );
  });

  it('refuses an unknown user, naming who may approve', () => {
    assert.equal(
      refuseVote(open, who('mallory', ['developers']), 'approve'),
      'mallory may not approve in production (approvers: alice, bob, group:release-managers)',
    );
    assert.match(refuseVote({ ...open, approvers: [] }, who('mallory'), 'approve') ?? '', /\(approvers: none\)/);
  });

  it('does not take a user named like a group, or a group named like a user, for the principal', () => {
    assert.match(refuseVote(open, who('group:release-managers'), 'approve') ?? '', /may not approve/);
    assert.match(refuseVote(open, who('release-managers'), 'approve') ?? '', /may not approve/);
    assert.match(refuseVote(open, who('mallory', ['alice']), 'approve') ?? '', /may not approve/);
  });

  it('refuses the requester approving their own deployment, even as a member of an approving group', () => {
    const requester = { ...open, requestedBy: who('alice') };
    assert.equal(
      refuseVote(requester, who('alice'), 'approve'),
      'alice requested this deployment and cannot approve it',
    );
    const member = { ...open, requestedBy: who('carol', ['release-managers']) };
    assert.match(refuseVote(member, who('carol', ['release-managers']), 'approve') ?? '', /requested this deployment/);
  });

  it('lets an approver who requested the deployment reject it', () => {
    assert.equal(refuseVote({ ...open, requestedBy: who('alice') }, who('alice'), 'reject'), undefined);
  });

  it('refuses a second vote by the same person', () => {
    const votes: Vote[] = [{ approver: 'alice', decision: 'approve', at: '', via: 'update' }];
    assert.match(refuseVote({ ...open, votes }, who('alice'), 'reject') ?? '', /alice has already voted/);
  });

  it('refuses a token whose id was already used, whoever it proves', () => {
    const used = { ...open, usedTokenIds: ['jti-1'] };
    assert.match(refuseVote(used, who('bob', [], 'jti-1'), 'approve') ?? '', /token was already used/);
    assert.equal(refuseVote(used, who('bob', [], 'jti-2'), 'approve'), undefined);
    assert.equal(
      refuseVote(used, { user: 'bob', groups: [], proof: 'insecure-dev' }, 'approve'),
      undefined,
      'a development-mode name carries no token id',
    );
  });
});

describe('request authorization', () => {
  it('restricts who may deploy to an environment, by name or group', () => {
    const prod = environment({ deployers: ['ci-bot', 'group:release'] });
    assert.equal(refuseRequester('prod', prod, who('ci-bot')), undefined);
    assert.equal(refuseRequester('prod', prod, who('dora', ['release'])), undefined);
    assert.equal(
      refuseRequester('prod', prod, who('eve')),
      'eve may not deploy to prod (deployers: ci-bot, group:release)',
    );
    assert.equal(refuseRequester('dev', environment(), who('eve')), undefined, 'no list: every verified identity');
  });

  it('lets the named resolvers resolve, else the approvers and deployers, else anyone', () => {
    const named = environment({ resolvers: ['group:sre'], deployers: ['ci-bot'] });
    assert.equal(refuseResolver('prod', named, who('dana', ['sre'])), undefined);
    assert.equal(
      refuseResolver('prod', named, who('ci-bot')),
      'ci-bot may not resolve deployments in prod (resolvers: group:sre)',
      'named resolvers replace the fallback',
    );
    const fallback = environment({
      deployers: ['ci-bot'],
      approval: { required: 1, approvers: ['alice', 'group:release-managers'] },
    });
    for (const ok of [who('ci-bot'), who('alice'), who('carol', ['release-managers'])])
      assert.equal(refuseResolver('prod', fallback, ok), undefined, ok.user);
    assert.match(
      refuseResolver('prod', fallback, who('mallory')) ?? '',
      /mallory may not resolve deployments in prod \(resolvers: alice, group:release-managers, ci-bot\)/,
    );
    assert.equal(refuseResolver('dev', environment(), who('mallory')), undefined);
  });
});

describe('freeze windows', () => {
  const frozen = environment({
    freezes: [{ from: '2026-12-24T00:00:00Z', until: '2026-12-27T00:00:00Z', reason: 'holidays' }],
    breakGlass: ['group:sre', 'incident-commander'],
  });
  const during = new Date('2026-12-25T12:00:00Z');

  it('lets requests outside every window through, with nothing to audit', () => {
    assert.deepEqual(judgeFreeze('prod', frozen, who('eve'), new Date('2026-12-23T23:59:59Z'), undefined), {});
    assert.deepEqual(
      judgeFreeze('prod', frozen, who('eve'), new Date('2026-12-27T00:00:00Z'), 'why'),
      {},
      'until is open',
    );
  });

  it('refuses a request inside a window, naming its end and reason', () => {
    assert.deepEqual(judgeFreeze('prod', frozen, who('dana', ['sre']), new Date('2026-12-24T00:00:00Z'), undefined), {
      refused: 'prod is frozen until 2026-12-27T00:00:00Z: holidays',
    });
  });

  it('lets a break-glass principal override the window, and says so for the audit', () => {
    for (const principal of [who('dana', ['sre']), who('incident-commander')]) {
      const decision = judgeFreeze('prod', frozen, principal, during, 'INC-42: checkout down');
      assert.equal(decision.refused, undefined);
      assert.equal(decision.override, `${principal.user} overrode the freeze (holidays): INC-42: checkout down`);
    }
  });

  it('refuses break-glass by anyone else', () => {
    assert.deepEqual(judgeFreeze('prod', frozen, who('eve', ['developers']), during, 'I am in a hurry'), {
      refused:
        'prod is frozen until 2026-12-27T00:00:00Z: holidays; eve may not break glass (allowed: group:sre, incident-commander)',
    });
    const nobody = environment({ freezes: frozen.freezes.map((f) => ({ ...f })) });
    assert.match(judgeFreeze('prod', nobody, who('dana', ['sre']), during, 'x').refused ?? '', /\(allowed: none\)$/);
  });
});
