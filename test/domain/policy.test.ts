import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, checkExpiry, resolvePolicy } from '../../src/domain/policy.js';
import { DAY, NOW, SECOND, expectRotorError, testLimits, testPolicy } from './fixtures.js';

describe('DEFAULT_LIMITS', () => {
  it('uses the documented defaults (365 d max lifetime, 10 min retry window)', () => {
    expect(DEFAULT_LIMITS.maxLifetimeSeconds).toBe(365 * 24 * 3600);
    expect(DEFAULT_LIMITS.retryWindowSeconds).toBe(600);
  });
});

describe('resolvePolicy', () => {
  const limits = testLimits({ defaultOverlapSeconds: 30, defaultReuseGraceSeconds: 5 });

  it('fills unset fields from the server defaults', () => {
    expect(resolvePolicy({}, limits)).toEqual({
      maxLifetimeSeconds: limits.maxLifetimeSeconds,
      defaultLifetimeSeconds: 0,
      overlapSeconds: 30,
      reuseGraceSeconds: 5,
    });
  });

  it('keeps requested values within bounds', () => {
    const request = {
      maxLifetimeSeconds: 86400,
      defaultLifetimeSeconds: 3600,
      overlapSeconds: 60,
      reuseGraceSeconds: 0,
    };
    expect(resolvePolicy(request, limits)).toEqual(request);
  });

  it('accepts values exactly at their bound', () => {
    const p = resolvePolicy(
      {
        maxLifetimeSeconds: 100,
        defaultLifetimeSeconds: 100,
        overlapSeconds: 100,
        reuseGraceSeconds: limits.maxReuseGraceSeconds,
      },
      limits,
    );
    expect(p.defaultLifetimeSeconds).toBe(100);
    expect(p.reuseGraceSeconds).toBe(limits.maxReuseGraceSeconds);
  });

  it('refuses a max lifetime above the server limit', () => {
    const err = expectRotorError(
      () => resolvePolicy({ maxLifetimeSeconds: limits.maxLifetimeSeconds + 1 }, limits),
      'invalid_argument',
      `policy.max_lifetime_seconds must be between 0 and ${limits.maxLifetimeSeconds} seconds`,
    );
    expect(err.details.field).toBe('policy.max_lifetime_seconds');
  });

  it('refuses a zero max lifetime', () => {
    const err = expectRotorError(
      () => resolvePolicy({ maxLifetimeSeconds: 0 }, limits),
      'invalid_argument',
      'must be positive',
    );
    expect(err.details.field).toBe('policy.max_lifetime_seconds');
  });

  it('refuses a default successor lifetime above the max lifetime', () => {
    const err = expectRotorError(
      () => resolvePolicy({ maxLifetimeSeconds: 100, defaultLifetimeSeconds: 101 }, limits),
      'invalid_argument',
      'policy.default_lifetime_seconds must be between 0 and 100',
    );
    expect(err.details.field).toBe('policy.default_lifetime_seconds');
  });

  it('refuses an overlap above the max lifetime', () => {
    expectRotorError(
      () => resolvePolicy({ maxLifetimeSeconds: 100, overlapSeconds: 101 }, limits),
      'invalid_argument',
      'policy.overlap_seconds',
    );
  });

  it('refuses a reuse grace above the server maximum', () => {
    expectRotorError(
      () => resolvePolicy({ reuseGraceSeconds: limits.maxReuseGraceSeconds + 1 }, limits),
      'invalid_argument',
      `policy.reuse_grace_seconds must be between 0 and ${limits.maxReuseGraceSeconds}`,
    );
  });

  it.each([
    ['negative', -1],
    ['fractional', 1.5],
    ['NaN', Number.NaN],
    ['infinite', Number.POSITIVE_INFINITY],
  ])('refuses a %s value', (_label, value) => {
    expectRotorError(
      () => resolvePolicy({ overlapSeconds: value }, limits),
      'invalid_argument',
      'policy.overlap_seconds must be between',
    );
  });
});

describe('checkExpiry', () => {
  const policy = testPolicy({ maxLifetimeSeconds: 30 * 24 * 3600 });
  const limits = testLimits();

  it('accepts an expiry in the future within the max lifetime', () => {
    expect(checkExpiry(NOW + DAY, NOW, policy, limits)).toBe(NOW + DAY);
  });

  it('accepts an expiry exactly at the cap', () => {
    expect(checkExpiry(NOW + 30 * DAY, NOW, policy, limits)).toBe(NOW + 30 * DAY);
  });

  it('refuses one millisecond past the cap, naming the cap', () => {
    const err = expectRotorError(
      () => checkExpiry(NOW + 30 * DAY + 1, NOW, policy, limits),
      'invalid_argument',
      `expires_at exceeds the max lifetime of ${30 * 24 * 3600} seconds`,
    );
    expect(err.details.field).toBe('expires_at');
  });

  it('caps by the server limit when it is lower than the token policy', () => {
    const tight = testLimits({ maxLifetimeSeconds: 3600 });
    expect(checkExpiry(NOW + 3600 * SECOND, NOW, policy, tight)).toBe(NOW + 3600 * SECOND);
    expectRotorError(
      () => checkExpiry(NOW + 3600 * SECOND + 1, NOW, policy, tight),
      'invalid_argument',
      'max lifetime of 3600 seconds',
    );
  });

  it.each([
    ['in the past', NOW - 1],
    ['equal to now', NOW],
    ['NaN', Number.NaN],
    ['infinite', Number.POSITIVE_INFINITY],
  ])('refuses an expiry %s', (_label, expiresAt) => {
    const err = expectRotorError(
      () => checkExpiry(expiresAt, NOW, policy, limits),
      'invalid_argument',
      'expires_at must be in the future',
    );
    expect(err.details.field).toBe('expires_at');
  });
});
