/** The pure half of the brakes (docs/limits.md): what counts as a failed authentication, and the fixed window. */
import { describe, expect, it } from 'vitest';
import { callPeerKey } from '../../src/api/peer-key.js';
import { countsAsFailedAuth, hitWindow, retryAfterSeconds } from '../../src/domain/rate-limits.js';
import { NOW } from './fixtures.js';

describe('countsAsFailedAuth', () => {
  it.each([
    ['invalid_token', true],
    ['token_expired', true],
    ['token_revoked', true],
    ['unauthenticated', true],
    ['invalid_workload_token', true],
    ['workload_mismatch', true],
    ['invalid_dpop_proof', true],
    ['use_dpop_nonce', false],
    ['reuse_detected', false],
    ['already_rotated', false],
    ['permission_denied', false],
    ['insufficient_scope', false],
    ['not_found', false],
    ['invalid_argument', false],
    ['unavailable', false],
    ['rate_limited', false],
  ] as const)('%s counts: %s', (code, counts) => {
    expect(countsAsFailedAuth(code, false)).toBe(counts);
  });

  it('never counts a call that carried no credential', () => {
    expect(countsAsFailedAuth('unauthenticated', true)).toBe(false);
  });
});

describe('hitWindow and retryAfterSeconds', () => {
  it('counts up inside a window and starts again once it ended', () => {
    let w = hitWindow(undefined, NOW, 60_000);
    expect(w).toEqual({ count: 1, resetAt: NOW + 60_000 });
    w = hitWindow(w, NOW + 59_999, 60_000);
    expect(w).toEqual({ count: 2, resetAt: NOW + 60_000 });
    expect(hitWindow(w, NOW + 60_000, 60_000)).toEqual({ count: 1, resetAt: NOW + 120_000 });
  });

  it('rounds the wait up to whole seconds, at least one', () => {
    expect(retryAfterSeconds(NOW + 59_001, NOW)).toBe(60);
    expect(retryAfterSeconds(NOW + 1, NOW)).toBe(1);
    expect(retryAfterSeconds(NOW, NOW)).toBe(1);
  });
});

describe('callPeerKey', () => {
  it.each([
    ['127.0.0.2', '127.0.0.2'],
    ['127.0.0.2:51234', '127.0.0.2'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['2001:db8:1:2:3:4:5:6:443', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::7', '2001:db8:1:2::/64'],
    ['::1:60000', '0:0:0:0::/64'],
    [null, 'unknown'],
  ])('%s → %s', (peer, key) => {
    expect(callPeerKey(peer)).toBe(key);
  });
});
