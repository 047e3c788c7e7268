import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createTokenKeys, digestsEqual, subkey } from '../../src/domain/token-keys.js';
import { formatSecret } from '../../src/domain/token-secret.js';
import { SERVER_SECRET, seededRandom, testKeys } from './fixtures.js';

const OTHER_SECRET = new Uint8Array(32).fill(9);

describe('createTokenKeys', () => {
  it('refuses a server secret shorter than 32 bytes', () => {
    expect(() => createTokenKeys(new Uint8Array(31))).toThrow(TypeError);
    expect(() => createTokenKeys(new Uint8Array(31))).toThrow('at least 32 bytes');
    expect(() => createTokenKeys(new Uint8Array(32))).not.toThrow();
  });
});

describe('secretDigest', () => {
  it('is deterministic, keyed, and never the secret itself', () => {
    const secret = formatSecret('personal', seededRandom('digest'));
    const a = testKeys().secretDigest(secret);
    expect(testKeys().secretDigest(secret)).toBe(a);
    expect(createTokenKeys(OTHER_SECRET).secretDigest(secret)).not.toBe(a);
    expect(a).not.toContain(secret);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/); // base64url of 32 bytes
  });

  it('is HMAC-SHA-256 under the secret-digest subkey, base64url (the stored form must never change)', () => {
    const secret = formatSecret('service_account', seededRandom('stored-form'));
    const expected = createHmac('sha256', subkey(SERVER_SECRET, 'rotor/v1/secret-digest'))
      .update(secret)
      .digest('base64url');
    expect(testKeys().secretDigest(secret)).toBe(expected);
    const key = 'retry-key-1';
    const expectedKey = createHmac('sha256', subkey(SERVER_SECRET, 'rotor/v1/idempotency-digest'))
      .update(key)
      .digest('base64url');
    expect(testKeys().idempotencyDigest(key)).toBe(expectedKey);
  });

  it('is domain-separated from the idempotency digest', () => {
    const keys = testKeys();
    expect(keys.secretDigest('same-input-0000000')).not.toBe(keys.idempotencyDigest('same-input-0000000'));
  });
});

describe('idempotencyDigest', () => {
  it('is deterministic per key and differs between keys', () => {
    const keys = testKeys();
    expect(keys.idempotencyDigest('key-aaaaaaaaaaaaaaaa')).toBe(testKeys().idempotencyDigest('key-aaaaaaaaaaaaaaaa'));
    expect(keys.idempotencyDigest('key-aaaaaaaaaaaaaaaa')).not.toBe(keys.idempotencyDigest('key-aaaaaaaaaaaaaaab'));
  });
});

describe('successorBytes', () => {
  const seed = 'rtr_pat_predecessorsecret';
  const key = 'idem-key-0123456789';

  it('yields the same stream for the same (seed, key)', () => {
    const a = testKeys().successorBytes(seed, key);
    const b = testKeys().successorBytes(seed, key);
    expect(Buffer.from(a(48))).toEqual(Buffer.from(b(48)));
    expect(Buffer.from(a(16))).toEqual(Buffer.from(b(16)));
  });

  it('derives the same successor secret on a retry', () => {
    const first = formatSecret('personal', testKeys().successorBytes(seed, key));
    const retry = formatSecret('personal', testKeys().successorBytes(seed, key));
    expect(retry).toBe(first);
  });

  it('differs for another seed, another key, or another server secret', () => {
    const base = Buffer.from(testKeys().successorBytes(seed, key)(32));
    expect(Buffer.from(testKeys().successorBytes(`${seed}x`, key)(32))).not.toEqual(base);
    expect(Buffer.from(testKeys().successorBytes(seed, `${key}x`)(32))).not.toEqual(base);
    expect(Buffer.from(createTokenKeys(OTHER_SECRET).successorBytes(seed, key)(32))).not.toEqual(base);
    expect(Buffer.from(createTokenKeys(SERVER_SECRET).successorBytes(seed, key)(32))).toEqual(base);
  });

  it('does not confuse the boundary between seed and key', () => {
    const a = Buffer.from(testKeys().successorBytes('ab', 'c')(32));
    const b = Buffer.from(testKeys().successorBytes('a', 'bc')(32));
    expect(a).not.toEqual(b);
  });

  it('keeps producing fresh bytes on successive calls and returns exactly the length asked', () => {
    const stream = testKeys().successorBytes(seed, key);
    const first = stream(32);
    const second = stream(32);
    const long = stream(100);
    expect(first).toHaveLength(32);
    expect(long).toHaveLength(100);
    expect(Buffer.from(second)).not.toEqual(Buffer.from(first));
  });
});

describe('digestsEqual', () => {
  it('compares digests of equal and unequal length', () => {
    expect(digestsEqual('abc', 'abc')).toBe(true);
    expect(digestsEqual('abc', 'abd')).toBe(false);
    expect(digestsEqual('abc', 'abcd')).toBe(false);
    expect(digestsEqual('', '')).toBe(true);
  });
});
