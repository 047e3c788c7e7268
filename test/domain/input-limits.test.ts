import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  LIMITS,
  requireAudiences,
  requireId,
  requireIdempotencyKey,
  requireIdentifier,
  requireText,
} from '../../src/domain/input-limits.js';
import { expectRotorError } from './fixtures.js';

describe('requireIdentifier', () => {
  it('accepts printable identifiers up to the limit', () => {
    expect(requireIdentifier('owner_id', 'user@example.com', LIMITS.ownerId)).toBe('user@example.com');
    expect(requireIdentifier('owner_id', 'x'.repeat(LIMITS.ownerId), LIMITS.ownerId)).toHaveLength(LIMITS.ownerId);
  });

  it.each([
    ['', 'owner_id: is required'],
    ['x'.repeat(LIMITS.ownerId + 1), `owner_id: must be at most ${LIMITS.ownerId} characters`],
    ['has space', 'owner_id: must be printable characters without whitespace'],
    ['tab\there', 'without whitespace'],
    ['ümlaut', 'without whitespace'],
  ])('refuses %j', (value, message) => {
    const err = expectRotorError(
      () => requireIdentifier('owner_id', value, LIMITS.ownerId),
      'invalid_argument',
      message,
    );
    expect(err.details.field).toBe('owner_id');
  });
});

describe('requireText', () => {
  it('accepts text with spaces and unicode', () => {
    expect(requireText('description', 'Deploys the wëb app', LIMITS.description)).toBe('Deploys the wëb app');
    expect(requireText('description', '', LIMITS.description)).toBe('');
  });

  it('refuses blank text when required', () => {
    expectRotorError(() => requireText('name', '   ', LIMITS.name, true), 'invalid_argument', 'name: is required');
  });

  it('refuses text over the limit and control characters', () => {
    expectRotorError(
      () => requireText('name', 'x'.repeat(LIMITS.name + 1), LIMITS.name),
      'invalid_argument',
      `at most ${LIMITS.name}`,
    );
    expectRotorError(
      () => requireText('name', 'line\nbreak', LIMITS.name),
      'invalid_argument',
      'name: must not contain control or format characters',
    );
    for (const c of ['\u009b', '\u202e', '\u200b', '\u2028']) {
      expectRotorError(
        () => requireText('description', `a${c}b`, LIMITS.description),
        'invalid_argument',
        'must not contain control or format characters',
      );
    }
    expect(requireText('description', 'Grüße, 日本 – ok', LIMITS.description)).toBe('Grüße, 日本 – ok');
    expectRotorError(
      () => requireText('name', 'del\x7f', LIMITS.name),
      'invalid_argument',
      'control or format characters',
    );
  });
});

describe('requireId', () => {
  it('accepts tok_ and fam_ ids', () => {
    expect(requireId('id', 'tok_abcDEF123')).toBe('tok_abcDEF123');
    expect(requireId('family_id', 'fam_0')).toBe('fam_0');
  });

  it.each(['', 'tok_', 'TOK_abc', 'tok-abc', 'tok_abc!', `tok_${'a'.repeat(61)}`, 'token_abc'])(
    'refuses %j',
    (value) => {
      const err = expectRotorError(
        () => requireId('id', value),
        'invalid_argument',
        value === '' ? 'id: is required' : 'id: is not a valid id',
      );
      expect(err.details.field).toBe('id');
    },
  );
});

describe('requireIdempotencyKey', () => {
  it('accepts 22..128 URL-safe characters of random key material, 32+ when only hex digits', () => {
    expect(requireIdempotencyKey('Kq8xP2mZ7vB4nL9wR3tY6e')).toHaveLength(22);
    expect(requireIdempotencyKey('9f86d081884c7d659a2feaa0c55ad015')).toHaveLength(32);
    expect(requireIdempotencyKey('1b4e28ba-2fa1-41d2-883f-0016d3cca427')).toHaveLength(36); // a UUID
    expect(requireIdempotencyKey(`${'Ab0_-Qz9'.repeat(15)}xY3k_Pw7`)).toHaveLength(128);
  });

  it('accepts what a secure random source produces (10,000 keys of each form the docs suggest)', () => {
    for (let i = 0; i < 10_000; i++) {
      requireIdempotencyKey(randomBytes(16).toString('base64url')); // 22 characters
      requireIdempotencyKey(randomBytes(16).toString('hex')); // 32 hex digits
      requireIdempotencyKey(randomBytes(24).toString('base64url')); // 32 characters, as rotor agent makes
    }
  });

  it.each([
    ['too short', 'Kq8xP2mZ7vB4nL9wR3tY6'],
    ['too long', `${'Ab0_-'.repeat(25)}abcd`],
    ['bad character', 'Kq8xP2mZ7vB4nL9wR3tY6e='],
    ['space', 'Kq8xP2mZ7vB 4nL9wR3tY6e'],
  ])('refuses a key that is %s', (_label, key) => {
    const err = expectRotorError(
      () => requireIdempotencyKey(key),
      'invalid_argument',
      'idempotency_key: must be 22-128 characters',
    );
    expect(err.details.field).toBe('idempotency_key');
  });

  it('refuses hex keys under 128 bits', () => {
    expectRotorError(
      () => requireIdempotencyKey('9f86d081884c7d659a2feaa0c55ad01'),
      'invalid_argument',
      'hex digits only must be at least 32 characters',
    );
  });

  it.each([
    ['one character', 'a'.repeat(40), 'too few distinct characters'],
    ['a counter', '00000000000000000000000000004711', 'too few distinct characters'],
    ['a repeated pattern', 'Xk3_9QpZXk3_9QpZXk3_9QpZXk3_9QpZ', 'it repeats a shorter pattern'],
    ['the alphabet', 'abcdefghijklmnopqrstuvwxyz', 'most characters follow their neighbour in sequence'],
    ['counting digits', '01234567890123456789012345678901', 'it repeats a shorter pattern'],
  ])('refuses a key that is obviously not random: %s', (_label, key, why) => {
    const err = expectRotorError(
      () => requireIdempotencyKey(key),
      'invalid_argument',
      `idempotency_key: does not look random (${why})`,
    );
    expect(err.details.field).toBe('idempotency_key');
  });
});

describe('requireAudiences', () => {
  it('de-duplicates and keeps order', () => {
    expect(requireAudiences('audience', ['b', 'a', 'b'])).toEqual(['b', 'a']);
  });

  it('refuses too many values', () => {
    const many = Array.from({ length: LIMITS.audiences + 1 }, (_, i) => `aud${i}`);
    expectRotorError(
      () => requireAudiences('audience', many),
      'invalid_argument',
      `audience: at most ${LIMITS.audiences} values`,
    );
  });

  it('refuses an empty or oversized value', () => {
    expectRotorError(() => requireAudiences('resource', ['']), 'invalid_argument', 'resource: is required');
    expectRotorError(
      () => requireAudiences('resource', ['x'.repeat(LIMITS.audience + 1)]),
      'invalid_argument',
      `at most ${LIMITS.audience}`,
    );
  });
});
