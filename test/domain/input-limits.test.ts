import { describe, expect, it } from 'vitest';
import { LIMITS, requireAudiences, requireId, requireIdempotencyKey, requireIdentifier, requireText } from '../../src/domain/input-limits.js';
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
    const err = expectRotorError(() => requireIdentifier('owner_id', value, LIMITS.ownerId), 'invalid_argument', message);
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
    expectRotorError(() => requireText('name', 'x'.repeat(LIMITS.name + 1), LIMITS.name), 'invalid_argument', `at most ${LIMITS.name}`);
    expectRotorError(() => requireText('name', 'line\nbreak', LIMITS.name), 'invalid_argument', 'name: must not contain control or format characters');
    for (const c of ['\u009b', '\u202e', '\u200b', '\u2028']) {
      expectRotorError(() => requireText('description', `a${c}b`, LIMITS.description), 'invalid_argument', 'must not contain control or format characters');
    }
    expect(requireText('description', 'Grüße, 日本 – ok', LIMITS.description)).toBe('Grüße, 日本 – ok');
    expectRotorError(() => requireText('name', 'del\x7f', LIMITS.name), 'invalid_argument', 'control or format characters');
  });
});

describe('requireId', () => {
  it('accepts tok_ and fam_ ids', () => {
    expect(requireId('id', 'tok_abcDEF123')).toBe('tok_abcDEF123');
    expect(requireId('family_id', 'fam_0')).toBe('fam_0');
  });

  it.each(['', 'tok_', 'TOK_abc', 'tok-abc', 'tok_abc!', 'tok_' + 'a'.repeat(61), 'token_abc'])('refuses %j', (value) => {
    const err = expectRotorError(() => requireId('id', value), 'invalid_argument', value === '' ? 'id: is required' : 'id: is not a valid id');
    expect(err.details.field).toBe('id');
  });
});

describe('requireIdempotencyKey', () => {
  it('accepts 16..128 URL-safe characters', () => {
    expect(requireIdempotencyKey('a'.repeat(16))).toHaveLength(16);
    expect(requireIdempotencyKey('Ab0_-'.repeat(25) + 'abc')).toHaveLength(128);
  });

  it.each([
    ['too short', 'a'.repeat(15)],
    ['too long', 'a'.repeat(129)],
    ['bad character', 'a'.repeat(16) + '='],
    ['space', 'a'.repeat(8) + ' ' + 'a'.repeat(8)],
  ])('refuses a key that is %s', (_label, key) => {
    const err = expectRotorError(() => requireIdempotencyKey(key), 'invalid_argument', 'idempotency_key: must be 16-128 characters');
    expect(err.details.field).toBe('idempotency_key');
  });
});

describe('requireAudiences', () => {
  it('de-duplicates and keeps order', () => {
    expect(requireAudiences('audience', ['b', 'a', 'b'])).toEqual(['b', 'a']);
  });

  it('refuses too many values', () => {
    const many = Array.from({ length: LIMITS.audiences + 1 }, (_, i) => `aud${i}`);
    expectRotorError(() => requireAudiences('audience', many), 'invalid_argument', `audience: at most ${LIMITS.audiences} values`);
  });

  it('refuses an empty or oversized value', () => {
    expectRotorError(() => requireAudiences('resource', ['']), 'invalid_argument', 'resource: is required');
    expectRotorError(() => requireAudiences('resource', ['x'.repeat(LIMITS.audience + 1)]), 'invalid_argument', `at most ${LIMITS.audience}`);
  });
});
