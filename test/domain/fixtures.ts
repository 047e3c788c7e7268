import { createHmac } from 'node:crypto';
import { expect } from 'vitest';
import { RotorError, type RotorErrorCode } from '../../src/domain/errors.js';
import { DEFAULT_LIMITS, type PolicyLimits, type TokenPolicy } from '../../src/domain/policy.js';
import type { RandomSource } from '../../src/domain/ports.js';
import { SCOPE_ROTATE } from '../../src/domain/scopes.js';
import { createTokenKeys, type TokenKeys } from '../../src/domain/token-keys.js';
import type { TokenRecord } from '../../src/domain/token.js';

/** The fake clock: a fixed instant in milliseconds. Tests add offsets to it, never read real time. */
export const NOW = 1_700_000_000_000;
export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * A deterministic RandomSource: an HMAC-SHA-256 counter stream keyed by `seed`. Same seed, same
 * bytes, in the same order; never Math.random.
 */
export function seededRandom(seed: string): RandomSource {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (length) => {
    while (pool.length < length) {
      const block = createHmac('sha256', seed).update(String(counter++)).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = new Uint8Array(pool.subarray(0, length));
    pool = pool.subarray(length);
    return out;
  };
}

/** A fixed 32-byte server secret, so digests are stable across runs. */
export const SERVER_SECRET = new Uint8Array(32).fill(7);

/** Token keys built from the fixed server secret. */
export function testKeys(secret: Uint8Array = SERVER_SECRET): TokenKeys {
  return createTokenKeys(secret);
}

/** A policy with every knob set explicitly, so tests do not depend on server defaults. */
export function testPolicy(overrides: Partial<TokenPolicy> = {}): TokenPolicy {
  return {
    maxLifetimeSeconds: 90 * 24 * 3600,
    defaultLifetimeSeconds: 0,
    overlapSeconds: 0,
    reuseGraceSeconds: 10,
    ...overrides,
  };
}

/** Server limits: the defaults (retry window 600 s, max lifetime 365 d) unless overridden. */
export function testLimits(overrides: Partial<PolicyLimits> = {}): PolicyLimits {
  return { ...DEFAULT_LIMITS, ...overrides };
}

/**
 * An active personal token created one day before NOW with a 30-day lifetime and the scopes
 * `read write rotor:rotate`. Override any field.
 */
export function tokenRecord(overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id: 'tok_current000000000000001',
    familyId: 'fam_family0000000000000001',
    previousId: null,
    successorId: null,
    kind: 'personal',
    ownerId: 'user-1',
    name: 'ci token',
    description: 'used by CI',
    scopes: ['read', 'write', SCOPE_ROTATE],
    audiences: ['api'],
    policy: testPolicy(),
    createdAt: NOW - DAY,
    expiresAt: NOW + 29 * DAY,
    lastUsedAt: null,
    revokedAt: null,
    revokeReason: null,
    rotatedAt: null,
    overlapEndedAt: null,
    secretDigest: 'digest-current',
    displayPrefix: 'rtr_pat_abcd',
    rotationKeyDigest: null,
    parentId: null,
    cascadeRevokedAt: null,
    retirePredecessorUntil: null,
    ...overrides,
  };
}

/**
 * A predecessor rotated at `rotatedAt` with idempotency key digest `keyDigest`, and its active
 * successor. The predecessor's policy can be overridden (e.g. overlap, reuse grace).
 */
export function rotatedPair(
  opts: { rotatedAt?: number; keyDigest?: string | null; policy?: Partial<TokenPolicy> } = {},
): { predecessor: TokenRecord; successor: TokenRecord } {
  const rotatedAt = opts.rotatedAt ?? NOW;
  const policy = testPolicy(opts.policy);
  const predecessor = tokenRecord({
    policy,
    successorId: 'tok_successor0000000000001',
    revokedAt: rotatedAt,
    revokeReason: 'rotated',
    rotatedAt,
    rotationKeyDigest: opts.keyDigest === undefined ? 'key-digest-1' : opts.keyDigest,
  });
  const successor = tokenRecord({
    id: 'tok_successor0000000000001',
    previousId: predecessor.id,
    policy,
    createdAt: rotatedAt,
    expiresAt: rotatedAt + 30 * DAY,
    secretDigest: 'digest-successor',
  });
  return { predecessor, successor };
}

/**
 * Runs `fn`, asserts it throws a RotorError with `code` whose message contains `message`, and
 * returns the error for further checks.
 */
export function expectRotorError(fn: () => unknown, code: RotorErrorCode, message: string | RegExp): RotorError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a RotorError to be thrown').toBeInstanceOf(RotorError);
  const err = caught as RotorError;
  expect(err.code).toBe(code);
  if (typeof message === 'string') expect(err.message).toContain(message);
  else expect(err.message).toMatch(message);
  return err;
}
