import { describe, expect, it } from 'vitest';
import {
  assertUsable,
  isUsable,
  issuedLifetime,
  revokedError,
  rotationTime,
  tokenState,
  usableUntil,
} from '../../src/domain/token.js';
import { DAY, HOUR, NOW, SECOND, expectRotorError, rotatedPair, testPolicy, tokenRecord } from './fixtures.js';

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

  it('ends the overlap when the successor was rotated, even if its family was revoked later', () => {
    const { predecessor, successor } = rotatedPair({ policy: { overlapSeconds: 60 } });
    const moved = {
      ...successor,
      rotatedAt: NOW + 10 * SECOND,
      revokedAt: NOW + 20 * SECOND,
      revokeReason: 'reuse_detected' as const,
    };
    expect(usableUntil(predecessor, moved)).toBe(NOW + 10 * SECOND);
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

  it.each([
    ['revoked', 'token has been revoked'],
    ['family_revoked', 'token has been revoked: its family was revoked at 2023-11-14T22:13:19.999Z'],
    ['reuse_detected', 'token has been revoked: reuse detected at 2023-11-14T22:13:19.999Z'],
  ] as const)('refuses a token revoked as %s with token_revoked "%s"', (reason, message) => {
    const t = tokenRecord({ revokedAt: NOW - 1, revokeReason: reason });
    const err = expectRotorError(() => assertUsable(t, NOW), 'token_revoked', message);
    expect(err.message).toBe(message);
  });

  it('refuses a rotated token of a family revoked for reuse with the revocation time, never a secret', () => {
    const { predecessor } = rotatedPair({ rotatedAt: NOW - DAY, policy: { overlapSeconds: 3600 } });
    const t = { ...predecessor, revokedAt: NOW, revokeReason: 'reuse_detected' as const };
    const err = expectRotorError(() => assertUsable(t, NOW + SECOND), 'token_revoked', 'reuse detected');
    expect(err.message).toBe(`token has been revoked: reuse detected at ${new Date(NOW).toISOString()}`);
    expect(err.message).not.toContain(t.secretDigest);
  });

  it('passes for a rotated token inside its overlap and refuses it after', () => {
    const t = tokenRecord({ revokedAt: NOW, revokeReason: 'rotated', policy: testPolicy({ overlapSeconds: 60 }) });
    expect(() => assertUsable(t, NOW + 59 * SECOND)).not.toThrow();
    expectRotorError(() => assertUsable(t, NOW + 60 * SECOND), 'token_revoked', 'overlap window has ended');
  });
});

describe('rotatedAt', () => {
  it('keeps the rotation time once the family is revoked: the token is REVOKED and never usable again', () => {
    const { predecessor } = rotatedPair({ rotatedAt: NOW - HOUR, policy: { overlapSeconds: 2 * 3600 } });
    expect(usableUntil(predecessor)).toBe(NOW + HOUR);
    const revoked = { ...predecessor, revokedAt: NOW, revokeReason: 'family_revoked' as const };
    expect(tokenState(revoked, NOW)).toBe('revoked');
    expect(usableUntil(revoked)).toBe(0);
    expect(rotationTime(revoked)).toBe(NOW - HOUR);
  });

  it('the overlap runs from rotatedAt; a rotated row without it falls back to revokedAt', () => {
    const t = tokenRecord({
      revokedAt: NOW,
      rotatedAt: NOW - 30 * SECOND,
      revokeReason: 'rotated',
      policy: testPolicy({ overlapSeconds: 60 }),
    });
    expect(usableUntil(t)).toBe(NOW + 30 * SECOND);
    expect(usableUntil({ ...t, rotatedAt: null })).toBe(NOW + 60 * SECOND);
    expect(rotationTime({ ...t, rotatedAt: null })).toBe(NOW);
  });
});

describe('revokedError', () => {
  it('says nothing more for a token that is not revoked', () => {
    expect(revokedError(tokenRecord()).message).toBe('token has been revoked');
  });
});

describe('issuedLifetime', () => {
  it('is expiry minus creation in milliseconds', () => {
    expect(issuedLifetime(tokenRecord({ createdAt: NOW, expiresAt: NOW + 7 * DAY }))).toBe(7 * DAY);
  });
});
