import { createHmac, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveServerKey, digestKeyId, keyIdOf } from '../../src/domain/server-keys.js';
import { createTokenKeys, digestsEqual } from '../../src/domain/token-keys.js';
import { RotorError } from '../../src/domain/errors.js';
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
    expect(a).toMatch(/^[A-Za-z0-9_-]{8}\.[A-Za-z0-9_-]{43}$/); // key id, base64url of 32 bytes
  });

  it('gives the same digest from its memory of recent secrets as fresh, past its capacity and its second', async () => {
    const keys = testKeys();
    const other = createTokenKeys(OTHER_SECRET);
    const hkdf = Buffer.from(hkdfSync('sha256', SERVER_SECRET, new Uint8Array(0), 'rotor token secret digest', 32));
    const fresh = (s: string) => `${keys.id}.${createHmac('sha256', hkdf).update(s).digest('base64url')}`;
    const secrets = Array.from({ length: 1500 }, (_, i) => formatSecret('personal', seededRandom(`memo-${i}`)));
    // Twice over more secrets than it keeps, interleaved with another key's: each key its own
    // digests, from memory (presentedDigest fills it, secretDigest reads it) or made afresh.
    for (let round = 0; round < 2; round++)
      for (const s of secrets) {
        expect(keys.presentedDigest(s)).toBe(fresh(s));
        expect(keys.secretDigest(s)).toBe(fresh(s));
        expect(other.presentedDigest(s)).not.toBe(fresh(s));
        expect(other.secretDigest(s)).toBe(other.presentedDigest(s));
      }
    await new Promise((r) => setTimeout(r, 1100));
    expect(keys.secretDigest(secrets[1499]!)).toBe(fresh(secrets[1499]!));
    expect(keys.presentedDigest(secrets[1499]!)).toBe(fresh(secrets[1499]!));
  });

  it('presentedDigest parses first, and remembers only what parsed', () => {
    const keys = testKeys();
    const secret = formatSecret('personal', seededRandom('presented'));
    expect(keys.presentedDigest(secret)).toBe(createTokenKeys(SERVER_SECRET).secretDigest(secret));
    expect(keys.presentedDigest(secret)).toBe(keys.secretDigest(secret));
    // A checksum that does not match, twice (the first refusal is not remembered), and a string
    // secretDigest was asked about (it reads the memory, never adds to it): refused every time.
    const typo = `${secret.slice(0, -1)}${secret.endsWith('0') ? '1' : '0'}`;
    for (let i = 0; i < 2; i++) expect(() => keys.presentedDigest(typo)).toThrow(/checksum/);
    keys.secretDigest('not a secret');
    expect(() => keys.presentedDigest('not a secret')).toThrow(RotorError);
    expect(() => keys.presentedDigest('')).toThrow(/empty/);
  });

  it('is the key id and HMAC-SHA-256 under the HKDF subkey of its label, base64url (the stored form must never change)', () => {
    const hkdf = (label: string, n = 32) => Buffer.from(hkdfSync('sha256', SERVER_SECRET, new Uint8Array(0), label, n));
    const id = hkdf('rotor key id', 6).toString('base64url');
    expect(keyIdOf(SERVER_SECRET)).toBe(id);
    expect(testKeys().id).toBe(id);
    const secret = formatSecret('service_account', seededRandom('stored-form'));
    const expected = createHmac('sha256', hkdf('rotor token secret digest')).update(secret).digest('base64url');
    expect(testKeys().secretDigest(secret)).toBe(`${id}.${expected}`);
    const key = 'retry-key-1';
    const expectedKey = createHmac('sha256', hkdf('rotor idempotency key digest')).update(key).digest('base64url');
    expect(testKeys().idempotencyDigest(key)).toBe(`${id}.${expectedKey}`);
  });

  it('still recognises the legacy form (HMAC subkeys of the raw secret, no key id) among the older keys', () => {
    const legacySubkey = (label: string) => createHmac('sha256', SERVER_SECRET).update(label).digest();
    const secret = formatSecret('service_account', seededRandom('stored-form'));
    const legacy = createHmac('sha256', legacySubkey('rotor/v1/secret-digest')).update(secret).digest('base64url');
    const keys = testKeys();
    expect(keys.older.map((k) => k.secretDigest(secret))).toEqual([legacy]);
    expect(keys.keysOf(legacy)).toHaveLength(1);
    expect(keys.keysOf(legacy)[0]!.id).toBeUndefined();
    const legacyKey = createHmac('sha256', legacySubkey('rotor/v1/idempotency-digest')).update('k').digest('base64url');
    expect(keys.keysOf(legacy)[0]!.idempotencyDigest('k')).toBe(legacyKey);
    expect(digestKeyId(legacy)).toBeUndefined();
    expect(digestKeyId(keys.secretDigest(secret))).toBe(keys.id);
  });

  it('is domain-separated from the idempotency digest', () => {
    const keys = testKeys();
    expect(keys.secretDigest('same-input-0000000')).not.toBe(keys.idempotencyDigest('same-input-0000000'));
  });
});

describe('previous server keys', () => {
  const A = SERVER_SECRET;
  const B = OTHER_SECRET;
  const secret = formatSecret('personal', seededRandom('previous'));

  it('digest under the current key; the older ones are the previous keys, then the legacy forms of each', () => {
    const rotated = createTokenKeys(B, [A]);
    expect(rotated.id).toBe(keyIdOf(B));
    expect(rotated.secretDigest(secret)).toBe(createTokenKeys(B).secretDigest(secret));
    const older = rotated.older.map((k) => k.secretDigest(secret));
    expect(older[0]).toBe(createTokenKeys(A).secretDigest(secret));
    expect(older.slice(1)).toEqual([
      createTokenKeys(B).older[0]!.secretDigest(secret),
      testKeys().older[0]!.secretDigest(secret),
    ]);
  });

  it('keysOf names the key a digest was made under; none for a key not configured', () => {
    const made = createTokenKeys(A).secretDigest(secret);
    expect(
      createTokenKeys(B, [A])
        .keysOf(made)
        .map((k) => k.id),
    ).toEqual([keyIdOf(A)]);
    expect(createTokenKeys(B).keysOf(made)).toEqual([]);
    const retry = createTokenKeys(B, [A]).keysOf(made)[0]!;
    expect(Buffer.from(retry.successorBytes('s', 'k')(32))).toEqual(
      Buffer.from(testKeys().successorBytes('s', 'k')(32)),
    );
  });

  it('refuses a previous secret shorter than 32 bytes', () => {
    expect(() => createTokenKeys(B, [new Uint8Array(31)])).toThrow('at least 32 bytes');
  });
});

describe('deriveServerKey', () => {
  it('derives independent keys per label from the current secret, and refuses the labels of digests and seals', () => {
    const keys = createTokenKeys(OTHER_SECRET, [SERVER_SECRET]);
    const nonce = keys.deriveServerKey('rotor dpop nonce');
    expect(nonce).toHaveLength(32);
    expect(nonce).toEqual(deriveServerKey(OTHER_SECRET, 'rotor dpop nonce'));
    expect(nonce).not.toEqual(keys.deriveServerKey('rotor other purpose'));
    expect(keys.deriveServerKeys('rotor dpop nonce')).toEqual([
      nonce,
      deriveServerKey(SERVER_SECRET, 'rotor dpop nonce'),
    ]);
    for (const label of ['rotor token secret digest', 'rotor signing key seal', 'rotor key id', ''])
      expect(() => keys.deriveServerKey(label)).toThrow('not a usable key label');
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
