import { describe, expect, it } from 'vitest';
import { decideFederation, type FederationRule } from '../../src/domain/federation.js';
import {
  claimMatches,
  sameBinding,
  subjectMatches,
  validateBinding,
  type WorkloadClaims,
} from '../../src/domain/workload-binding.js';
import { HOUR, MINUTE, NOW, expectRotorError } from './fixtures.js';

describe('subjectMatches', () => {
  const cases: [string, string, boolean][] = [
    ['repo:org/app:ref:refs/heads/main', 'repo:org/app:ref:refs/heads/main', true],
    ['repo:org/app:ref:refs/heads/main', 'repo:org/app:ref:refs/heads/mainx', false],
    ['repo:org/app:*', 'repo:org/app:ref:refs/heads/main', true],
    ['repo:org/app:*', 'repo:org/application:ref:x', false],
    ['repo:org/*:ref:refs/heads/main', 'repo:org/app:ref:refs/heads/main', true],
    ['repo:org/*:ref:refs/heads/main', 'repo:org/app:ref:refs/heads/dev', false],
    ['*:main', 'a:main', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'ac', false],
    ['a*a', 'a', false],
    ['project_path:group/app:*', 'project_path:group/app:', true],
    // Regex metacharacters are literal.
    ['a.c', 'abc', false],
  ];
  for (const [pattern, value, want] of cases) {
    it(`${pattern} ~ ${value} → ${want}`, () => expect(subjectMatches(pattern, value)).toBe(want));
  }
});

describe('claimMatches', () => {
  it('compares strings exactly and numbers or booleans by their text form', () => {
    expect(claimMatches('42', '42')).toBe(true);
    expect(claimMatches(42, '42')).toBe(true);
    expect(claimMatches(true, 'true')).toBe(true);
    expect(claimMatches('42 ', '42')).toBe(false);
    expect(claimMatches(['42'], '42')).toBe(false);
    expect(claimMatches({ v: '42' }, '42')).toBe(false);
    expect(claimMatches(undefined, '')).toBe(false);
  });
});

describe('validateBinding', () => {
  const ok = { issuer: 'https://ci.example', subject: 'repo:*', audience: 'rotor', claims: { b: '2', a: '1' } };
  it('accepts a binding and sorts its claims', () => {
    expect(Object.keys(validateBinding('policy.workload_binding', ok).claims)).toEqual(['a', 'b']);
  });
  it('names the bad field', () => {
    expectRotorError(
      () => validateBinding('policy.workload_binding', { ...ok, issuer: '' }),
      'invalid_argument',
      'policy.workload_binding.issuer: is required',
    );
    expectRotorError(
      () => validateBinding('policy.workload_binding', { ...ok, subject: '*' }),
      'invalid_argument',
      'policy.workload_binding.subject: must contain more than wildcards',
    );
    expectRotorError(
      () => validateBinding('policy.workload_binding', { ...ok, audience: 'x'.repeat(257) }),
      'invalid_argument',
      'policy.workload_binding.audience: must be at most 256 characters',
    );
    expectRotorError(
      () => validateBinding('policy.workload_binding', { ...ok, claims: { sub: 'x' } }),
      'invalid_argument',
      'policy.workload_binding.claims: sub is checked by its own field',
    );
    expectRotorError(
      () => validateBinding('policy.workload_binding', { ...ok, claims: { a: 'line\nbreak' } }),
      'invalid_argument',
      'policy.workload_binding.claims.a: must be printable ASCII',
    );
  });
  it('sameBinding compares every field', () => {
    expect(sameBinding(ok, { ...ok, claims: { a: '1', b: '2' } })).toBe(true);
    expect(sameBinding(ok, { ...ok, claims: { a: '1' } })).toBe(false);
    expect(sameBinding(ok, undefined)).toBe(false);
    expect(sameBinding(undefined, undefined)).toBe(true);
  });
});

describe('decideFederation', () => {
  const rule: FederationRule = {
    issuer: 'https://ci.example',
    subject: 'project_path:group/app:*',
    audience: 'rotor',
    claims: { namespace_id: '42' },
    serviceAccount: 'sa-deployer',
    scopes: ['deploy', 'read'],
    maxLifetimeSeconds: 3600,
    capToTokenExpiry: true,
    tokenAudiences: ['https://deploy.example'],
  };
  const w: WorkloadClaims = {
    iss: 'https://ci.example',
    sub: 'project_path:group/app:ref_type:branch:ref:main',
    aud: ['rotor'],
    exp: NOW + 10 * MINUTE,
    jti: 'j',
    claims: { namespace_id: '42' },
  };
  const MAX = 365 * 86400;

  it('grants the rule scopes for the JWT remaining life when the rule caps to it', () => {
    expect(decideFederation([rule], w, { scopes: [], audiences: [] }, NOW, MAX)).toMatchObject({
      scopes: ['deploy', 'read'],
      audiences: [],
      expiresAt: NOW + 10 * MINUTE,
    });
  });
  it('grants the rule lifetime when it does not cap, bounded by the server maximum', () => {
    expect(
      decideFederation([{ ...rule, capToTokenExpiry: false }], w, { scopes: [], audiences: [] }, NOW, MAX).expiresAt,
    ).toBe(NOW + HOUR);
    expect(
      decideFederation([{ ...rule, capToTokenExpiry: false }], w, { scopes: [], audiences: [] }, NOW, 600).expiresAt,
    ).toBe(NOW + 10 * MINUTE);
  });
  it('narrows scopes and audiences; beyond the rule is invalid_scope / invalid_target', () => {
    expect(
      decideFederation([rule], w, { scopes: ['read'], audiences: ['https://deploy.example'] }, NOW, MAX),
    ).toMatchObject({ scopes: ['read'], audiences: ['https://deploy.example'] });
    expectRotorError(
      () => decideFederation([rule], w, { scopes: ['read', 'admin'], audiences: [] }, NOW, MAX),
      'invalid_scope',
      "requested scopes exceed the federation rule's scopes: admin",
    );
    expectRotorError(
      () => decideFederation([rule], w, { scopes: [], audiences: ['https://other.example'] }, NOW, MAX),
      'invalid_target',
      'audience not allowed by the federation rule: https://other.example',
    );
  });
  it('takes the first matching rule, and refuses when none matches', () => {
    const second = { ...rule, subject: '*', claims: {}, serviceAccount: 'sa-any' };
    expect(decideFederation([rule, second], w, { scopes: [], audiences: [] }, NOW, MAX).rule.serviceAccount).toBe(
      'sa-deployer',
    );
    expect(
      decideFederation([rule, second], { ...w, claims: { namespace_id: '7' } }, { scopes: [], audiences: [] }, NOW, MAX)
        .rule.serviceAccount,
    ).toBe('sa-any');
    expectRotorError(
      () =>
        decideFederation([rule], { ...w, sub: 'project_path:group/other:x' }, { scopes: [], audiences: [] }, NOW, MAX),
      'workload_mismatch',
      'subject_token matches no federation rule',
    );
  });
});
