import { describe, expect, it } from 'vitest';
import { createCipheriv, createHmac } from 'node:crypto';
import { keyIdOf } from '../../src/domain/server-keys.js';
import { createSigningKeySeal, sealKeyId } from '../../src/domain/signing-key-seal.js';
import { SERVER_SECRET, seededRandom } from './fixtures.js';

const PRIVATE = JSON.stringify({ kty: 'EC', crv: 'P-256', d: 'private-scalar-value-000000000000000000000' });

describe('createSigningKeySeal', () => {
  it('round-trips, and the sealed form contains no plaintext', () => {
    const seal = createSigningKeySeal(SERVER_SECRET);
    const sealed = seal.seal('kid-1', PRIVATE, seededRandom('iv'));
    expect(sealed).toMatch(/^v2\.[\w-]{8}\.[\w-]{16}\.[\w-]+\.[\w-]{22}$/);
    expect(sealKeyId(sealed)).toBe(keyIdOf(SERVER_SECRET));
    expect(seal.isCurrent(sealed)).toBe(true);
    expect(sealed).not.toContain('private-scalar');
    expect(Buffer.from(sealed.split('.')[3]!, 'base64url').toString('latin1')).not.toContain('private-scalar');
    expect(seal.open('kid-1', sealed)).toBe(PRIVATE);
  });

  it('uses a fresh IV each time', () => {
    const seal = createSigningKeySeal(SERVER_SECRET);
    const random = seededRandom('iv');
    expect(seal.seal('kid-1', PRIVATE, random)).not.toBe(seal.seal('kid-1', PRIVATE, random));
  });

  it('refuses another server secret, another row and a tampered ciphertext', () => {
    const sealed = createSigningKeySeal(SERVER_SECRET).seal('kid-1', PRIVATE, seededRandom('iv'));
    expect(() => createSigningKeySeal(new Uint8Array(32).fill(1)).open('kid-1', sealed)).toThrow(
      'neither ROTOR_SECRET nor in ROTOR_SECRET_PREVIOUS',
    );
    expect(() => createSigningKeySeal(SERVER_SECRET).open('kid-2', sealed)).toThrow('cannot be decrypted');
    const [v, id, iv, body, tag] = sealed.split('.');
    const flipped = Buffer.from(body!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    expect(() =>
      createSigningKeySeal(SERVER_SECRET).open('kid-1', [v, id, iv, flipped.toString('base64url'), tag].join('.')),
    ).toThrow('cannot be decrypted');
    expect(() => createSigningKeySeal(SERVER_SECRET).open('kid-1', 'plain')).toThrow('not sealed in a known format');
  });

  it('opens what a previous key sealed, and a legacy v1 seal of the raw secret; either is not current', () => {
    const OTHER = new Uint8Array(32).fill(8);
    const old = createSigningKeySeal(SERVER_SECRET).seal('kid-1', PRIVATE, seededRandom('iv'));
    const rotated = createSigningKeySeal(OTHER, [SERVER_SECRET]);
    expect(rotated.open('kid-1', old)).toBe(PRIVATE);
    expect(rotated.isCurrent(old)).toBe(false);
    expect(rotated.isCurrent(rotated.seal('kid-1', PRIVATE, seededRandom('iv')))).toBe(true);
    // A v1 seal as Rotor wrote it before key ids: AES-256-GCM under HMAC(secret, label).
    const legacyKey = createHmac('sha256', SERVER_SECRET).update('rotor/v1/signing-key-seal').digest();
    const iv = Buffer.alloc(12, 3);
    const cipher = createCipheriv('aes-256-gcm', legacyKey, iv);
    cipher.setAAD(Buffer.from('rotor/v1/signing-key/kid-1'));
    const body = Buffer.concat([cipher.update(PRIVATE, 'utf8'), cipher.final()]);
    const v1 = [
      'v1',
      iv.toString('base64url'),
      body.toString('base64url'),
      cipher.getAuthTag().toString('base64url'),
    ].join('.');
    expect(rotated.open('kid-1', v1)).toBe(PRIVATE);
    expect(createSigningKeySeal(SERVER_SECRET).isCurrent(v1)).toBe(false);
    expect(sealKeyId(v1)).toBeUndefined();
    expect(() => createSigningKeySeal(OTHER).open('kid-1', v1)).toThrow('cannot be decrypted');
  });

  it('refuses a short server secret', () => {
    expect(() => createSigningKeySeal(new Uint8Array(31))).toThrow(TypeError);
  });
});
