import { describe, expect, it } from 'vitest';
import { createSigningKeySeal } from '../../src/domain/signing-key-seal.js';
import { SERVER_SECRET, seededRandom } from './fixtures.js';

const PRIVATE = JSON.stringify({ kty: 'EC', crv: 'P-256', d: 'private-scalar-value-000000000000000000000' });

describe('createSigningKeySeal', () => {
  it('round-trips, and the sealed form contains no plaintext', () => {
    const seal = createSigningKeySeal(SERVER_SECRET);
    const sealed = seal.seal('kid-1', PRIVATE, seededRandom('iv'));
    expect(sealed).toMatch(/^v1\.[\w-]{16}\.[\w-]+\.[\w-]{22}$/);
    expect(sealed).not.toContain('private-scalar');
    expect(Buffer.from(sealed.split('.')[2]!, 'base64url').toString('latin1')).not.toContain('private-scalar');
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
      'server secret differs',
    );
    expect(() => createSigningKeySeal(SERVER_SECRET).open('kid-2', sealed)).toThrow('cannot be decrypted');
    const [v, iv, body, tag] = sealed.split('.');
    const flipped = Buffer.from(body!, 'base64url');
    flipped[0] = flipped[0]! ^ 1;
    expect(() =>
      createSigningKeySeal(SERVER_SECRET).open('kid-1', [v, iv, flipped.toString('base64url'), tag].join('.')),
    ).toThrow('cannot be decrypted');
    expect(() => createSigningKeySeal(SERVER_SECRET).open('kid-1', 'plain')).toThrow('not sealed in a known format');
  });

  it('refuses a short server secret', () => {
    expect(() => createSigningKeySeal(new Uint8Array(31))).toThrow(TypeError);
  });
});
