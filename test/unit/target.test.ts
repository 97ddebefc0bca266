import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { ReleaseState } from '../../domain/release.js';
import { chooseKeptRelease, type KeptReleases } from '../../domain/target.js';

const release = (deploymentId: string, configHash: string, present = true): ReleaseState => ({
  present,
  handle: `revision-of-${deploymentId}`,
  deploymentId,
  configHash,
  running: present,
});

const live = release('d4', 'sha256:live');
/** Newest first, as drivers list them. */
const kept: ReleaseState[] = [
  release('d4', 'sha256:live'),
  release('d3', 'sha256:three'),
  release('d2', 'sha256:two'),
  release('d1', 'sha256:live'),
];
const where = 'web-shop in staging';

function refusal(releases: KeptReleases, deploymentId?: string): ApplicationFailure {
  try {
    chooseKeptRelease(releases, deploymentId);
  } catch (error) {
    assert.ok(error instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(error)}`);
    return error;
  }
  assert.fail('expected no release to be chosen');
}

describe('choosing the release a rollback brings back', () => {
  it('brings back the release a named deployment applied', () => {
    assert.equal(chooseKeptRelease({ live, kept, where }, 'd2'), kept[2]);
    assert.equal(chooseKeptRelease({ live, kept, where }, 'd1'), kept[3]);
  });

  it('without a deployment, brings back the newest kept release that differs from the live one', () => {
    assert.equal(chooseKeptRelease({ live, kept, where }), kept[1]);
  });

  it('skips kept releases that were nothing deployed', () => {
    const empty = release('d0', 'sha256:none', false);
    assert.equal(chooseKeptRelease({ live, kept: [kept[0]!, empty, kept[2]!], where }), kept[2]);
  });

  it('toggles back and forth between two releases like kubectl rollout undo', () => {
    const a = release('a', 'sha256:a');
    const b = release('b', 'sha256:b');
    assert.equal(chooseKeptRelease({ live: b, kept: [b, a], where }), a);
    assert.equal(chooseKeptRelease({ live: a, kept: [a, b], where }), b);
  });

  it('refuses an unknown deployment as invalid, naming it, the number kept and where', () => {
    const failure = refusal({ live, kept, where }, 'd9');
    assert.equal(failure.type, 'InvalidRelease');
    assert.equal(failure.nonRetryable, true);
    assert.equal(
      failure.message,
      'the release of deployment d9 is not among the 4 releases kept for web-shop in staging',
    );
  });

  it('refuses as invalid when every kept release equals the live one', () => {
    const failure = refusal({ live, kept: [kept[0]!, kept[3]!], where });
    assert.equal(failure.type, 'InvalidRelease');
    assert.equal(failure.message, 'no previous release of web-shop in staging is kept to roll back to');
    assert.equal(refusal({ live, kept: [], where }).message, failure.message);
  });
});
