import { describe, expect, it } from 'vitest';
import { assertUsable, isUsable, issuedLifetime, tokenState, usableUntil } from '../../src/domain/token.js';
import { DAY, NOW, SECOND, expectRotorError, rotatedPair, testPolicy, tokenRecord } from './fixtures.js';

describe('tokenState', () => {
  it('is active before expiry and expired from the expiry instant on', () => {
    const t = tokenRecord({ expiresAt: NOW + 1 });
    expect(tokenState(t, NOW)).toBe('active');
    expect(tokenState(t, NOW + 1)).toBe('expired');
  });

  it('is rotated when revoked by rotation, even after expiry', () => {
    const t = tokenRecord({ revokedAt: NOW, revokeReason: 'rotated' });
    expect(tokenState(t, NOW)).toBe('rotated');
    expect(tokenState(t, t.expiresAt + DAY)).toBe('rotated');
  });

  it.each(['revoked', 'family_revoked', 'reuse_detected'] as const)('is revoked for reason %s', (reason) => {
    const t = tokenRecord({ revokedAt: NOW - SECOND, revokeReason: reason });
    expect(tokenState(t, NOW)).toBe('revoked');
    expect(tokenState(t, t.expiresAt + 1)).toBe('revoked');
  });
});

describe('usableUntil / isUsable', () => {
  it('an active token is usable until its expiry', () => {
    const t = tokenRecord({ expiresAt: NOW + DAY });
    expect(usableUntil(t)).toBe(NOW + DAY);
    expect(isUsable(t, NOW + DAY - 1)).toBe(true);
    expect(isUsable(t, NOW + DAY)).toBe(false);
  });

  it('a revoked token is never usable', () => {
    const t = tokenRecord({
      revokedAt: NOW + SECOND,
      revokeReason: 'revoked',
      policy: testPolicy({ overlapSeconds: 3600 }),
    });
    expect(usableUntil(t)).toBe(0);
    expect(isUsable(t, NOW)).toBe(false);
  });

  it('a rotated token without overlap stops at the rotation instant', () => {
    const t = tokenRecord({ revokedAt: NOW, revokeReason: 'rotated', policy: testPolicy({ overlapSeconds: 0 }) });
    expect(usableUntil(t)).toBe(NOW);
    expect(isUsable(t, NOW - 1)).toBe(true);
    expect(isUsable(t, NOW)).toBe(false);
  });

  it('a rotated token with overlap is usable until rotation + overlap', () => {
    const t = tokenRecord({ revokedAt: NOW, revokeReason: 'rotated', policy: testPolicy({ overlapSeconds: 60 }) });
    expect(usableUntil(t)).toBe(NOW + 60 * SECOND);
  });

  it('the overlap never outlives the token expiry', () => {
    const t = tokenRecord({
      revokedAt: NOW,
      revokeReason: 'rotated',
      expiresAt: NOW + 30 * SECOND,
      policy: testPolicy({ overlapSeconds: 60 }),
    });
    expect(usableUntil(t)).toBe(NOW + 30 * SECOND);
  });
});

describe('at most one predecessor inside its overlap window', () => {
  it('keeps the overlap while the successor is the active head', () => {
    const { predecessor, successor } = rotatedPair({ policy: { overlapSeconds: 60 } });
    expect(isUsable(predecessor, NOW + 30 * SECOND, successor)).toBe(true);
    expect(usableUntil(predecessor, successor)).toBe(NOW + 60 * SECOND);
  });

  it('ends the overlap when the successor is rotated or revoked in turn', () => {
    const { predecessor, successor } = rotatedPair({ policy: { overlapSeconds: 60 } });
    for (const revokeReason of ['rotated', 'revoked'] as const) {
      const moved = { ...successor, revokedAt: NOW + 10 * SECOND, revokeReason };
      expect(usableUntil(predecessor, moved)).toBe(NOW + 10 * SECOND);
      expect(isUsable(predecessor, NOW + 10 * SECOND, moved)).toBe(false);
      expect(isUsable(predecessor, NOW + 9 * SECOND, moved)).toBe(true);
    }
  });

  it('ends the overlap when the successor expires first', () => {
    const { predecessor, successor } = rotatedPair({ policy: { overlapSeconds: 3600 } });
    const shortLived = { ...successor, expiresAt: NOW + 5 * SECOND };
    expect(usableUntil(predecessor, shortLived)).toBe(NOW + 5 * SECOND);
  });
});

describe('assertUsable', () => {
  it('passes for an active token', () => {
    expect(() => assertUsable(tokenRecord(), NOW)).not.toThrow();
  });

  it('refuses an expired token with token_expired', () => {
    const t = tokenRecord({ expiresAt: NOW });
    expectRotorError(() => assertUsable(t, NOW), 'token_expired', 'token has expired');
  });

  it('refuses a revoked token with token_revoked', () => {
    const t = tokenRecord({ revokedAt: NOW - 1, revokeReason: 'family_revoked' });
    expectRotorError(() => assertUsable(t, NOW), 'token_revoked', 'token has been revoked');
  });

  it('passes for a rotated token inside its overlap and refuses it after', () => {
    const t = tokenRecord({ revokedAt: NOW, revokeReason: 'rotated', policy: testPolicy({ overlapSeconds: 60 }) });
    expect(() => assertUsable(t, NOW + 59 * SECOND)).not.toThrow();
    expectRotorError(() => assertUsable(t, NOW + 60 * SECOND), 'token_revoked', 'overlap window has ended');
  });
});

describe('issuedLifetime', () => {
  it('is expiry minus creation in milliseconds', () => {
    expect(issuedLifetime(tokenRecord({ createdAt: NOW, expiresAt: NOW + 7 * DAY }))).toBe(7 * DAY);
  });
});
