import { describe, expect, it } from 'vitest';
import { requireWatch } from '../../src/domain/authorization.js';
import {
  expiredKey,
  expiringSoonKey,
  formatDurationSeconds,
  parseDurationSeconds,
  selectThresholds,
  stateAfter,
  thresholdApplies,
  wantsEvent,
} from '../../src/domain/expiry.js';
import { SCOPE_ADMIN } from '../../src/domain/scopes.js';
import { DAY, HOUR, NOW, expectRotorError, tokenRecord } from './fixtures.js';

const SCHEDULED = [30 * 86400, 7 * 86400, 86400, 3600];

describe('durations', () => {
  it('parses s, m, h, d and refuses anything else', () => {
    expect(['90s', '15m', '12h', '30d', ' 7d '].map((t) => parseDurationSeconds(t))).toEqual([
      90, 900, 43200, 2592000, 604800,
    ]);
    expect(['', '1w', '1.5h', '-1d', 'd', '10', '9999999999d', '1 d'].map((t) => parseDurationSeconds(t))).toEqual(
      Array(8).fill(undefined),
    );
    expect(parseDurationSeconds('0s')).toBe(0); // the configuration refuses it (test/runtime/config-expiry.test.ts)
    expect(parseDurationSeconds('10', { bareSeconds: true })).toBe(10);
    expect(parseDurationSeconds('31536000s')).toBe(31536000);
  });
  it('formats the shortest exact unit', () => {
    expect([2592000, 7200, 900, 61].map(formatDurationSeconds)).toEqual(['30d', '2h', '15m', '61s']);
  });
});

describe('thresholds', () => {
  it('a request picks a subset of the scheduled thresholds; empty means all', () => {
    expect(selectThresholds([], SCHEDULED)).toEqual(SCHEDULED);
    expect(selectThresholds([3600, 86400, 3600], SCHEDULED)).toEqual([86400, 3600]);
  });
  it('an unscheduled threshold is invalid_argument naming the allowed ones', () => {
    const e = expectRotorError(() => selectThresholds([3600, 7200, 5], SCHEDULED), 'invalid_argument', 'thresholds');
    expect(e.message).toBe('thresholds: 2h, 5s not scheduled by this server; allowed: 30d, 7d, 1d, 1h');
    expect(e.details.field).toBe('thresholds');
  });
  it('applies only when the token lives longer than the threshold', () => {
    expect(thresholdApplies(NOW, NOW + 2 * DAY, 86400)).toBe(true);
    expect(thresholdApplies(NOW, NOW + DAY, 86400)).toBe(false);
    expect(thresholdApplies(NOW, NOW + DAY, 7 * 86400)).toBe(false);
  });
  it('unique keys: one per (token, threshold) and one EXPIRED per token', () => {
    expect(expiringSoonKey('tok_a1', 3600)).toBe('expiring_soon:tok_a1:3600');
    expect(expiredKey('tok_a1')).toBe('expired:tok_a1');
  });
});

describe('events', () => {
  it('state after each event; a revocation that ends an overlap leaves the token rotated', () => {
    expect(stateAfter('created', null)).toBe('active');
    expect(stateAfter('expiring_soon', null)).toBe('active');
    expect(stateAfter('rotated', 'rotated')).toBe('rotated');
    expect(stateAfter('revoked', 'revoked')).toBe('revoked');
    expect(stateAfter('revoked', 'overlap_ended')).toBe('rotated');
    expect(stateAfter('family_revoked', 'reuse_detected')).toBe('revoked');
    expect(stateAfter('expired', null)).toBe('expired');
  });
});

describe('requireWatch', () => {
  const me = tokenRecord({ id: 'tok_me000000000000000000001', ownerId: 'user-1', scopes: ['read'] });
  it('own token, same owner, and admins may watch', () => {
    expect(() => requireWatch(me, me)).not.toThrow();
    expect(() => requireWatch(me, { ownerId: 'user-1' })).not.toThrow();
    const admin = tokenRecord({ ownerId: 'ops', scopes: [SCOPE_ADMIN], expiresAt: NOW + HOUR });
    expect(() => requireWatch(admin, { ownerId: 'user-2' })).not.toThrow();
  });
  it("another owner's tokens need rotor:admin", () => {
    const e = expectRotorError(() => requireWatch(me, { ownerId: 'user-2' }), 'permission_denied', 'rotor:admin');
    expect(e.message).toBe('watching tokens of another owner needs rotor:admin');
  });
});

describe('wantsEvent', () => {
  it('passes every event type, and EXPIRING_SOON only for a threshold the watcher asked for', () => {
    const asked = new Set([3600, 86400]);
    expect(wantsEvent(asked, { type: 'rotated', thresholdSeconds: null })).toBe(true);
    expect(wantsEvent(asked, { type: 'expiring_soon', thresholdSeconds: 3600 })).toBe(true);
    expect(wantsEvent(asked, { type: 'expiring_soon', thresholdSeconds: 7 * 86400 })).toBe(false);
    expect(wantsEvent(asked, { type: 'expiring_soon', thresholdSeconds: null })).toBe(false);
  });
});
