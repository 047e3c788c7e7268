import { describe, expect, it } from 'vitest';
import {
  MAX_SCOPES,
  MAX_SCOPE_LENGTH,
  SCOPE_ADMIN,
  SCOPE_INTROSPECT,
  SCOPE_ROTATE,
  hasScope,
  narrowScopes,
  normalizeScopes,
  parseScopeParameter,
} from '../../src/domain/scopes.js';
import { expectRotorError } from './fixtures.js';

describe('reserved scopes', () => {
  it('are namespaced under rotor:', () => {
    expect([SCOPE_ADMIN, SCOPE_ROTATE, SCOPE_INTROSPECT]).toEqual(['rotor:admin', 'rotor:rotate', 'rotor:introspect']);
  });
});

describe('normalizeScopes', () => {
  it('de-duplicates and keeps the caller order', () => {
    expect(normalizeScopes(['b', 'a', 'b', 'c', 'a'])).toEqual(['b', 'a', 'c']);
  });

  it('accepts every RFC 6749 scope-token character', () => {
    expect(normalizeScopes(['!#[]^~', 'repo:read', 'https://api.example/x'])).toHaveLength(3);
  });

  it.each([
    ['empty', ''],
    ['space', 'a b'],
    ['double quote', 'a"b'],
    ['backslash', 'a\\b'],
    ['control character', 'a\tb'],
    ['non-ASCII', 'lesen·schreiben'],
    ['too long', 'x'.repeat(MAX_SCOPE_LENGTH + 1)],
  ])('refuses a scope with %s as invalid_argument naming the field', (_label, scope) => {
    const err = expectRotorError(
      () => normalizeScopes(['ok', scope], 'scopes'),
      'invalid_argument',
      'scopes: each scope must be',
    );
    expect(err.details.field).toBe('scopes');
  });

  it('accepts a scope of exactly the maximum length', () => {
    expect(normalizeScopes(['x'.repeat(MAX_SCOPE_LENGTH)])).toHaveLength(1);
  });

  it('refuses more than MAX_SCOPES scopes', () => {
    const many = Array.from({ length: MAX_SCOPES + 1 }, (_, i) => `s${i}`);
    const err = expectRotorError(() => normalizeScopes(many), 'invalid_argument', `at most ${MAX_SCOPES} scopes`);
    expect(err.details.field).toBe('scopes');
    expect(normalizeScopes(many.slice(0, MAX_SCOPES))).toHaveLength(MAX_SCOPES);
  });
});

describe('parseScopeParameter', () => {
  it('splits on spaces, ignores repeated spaces, de-duplicates', () => {
    expect(parseScopeParameter('read  write read ')).toEqual(['read', 'write']);
  });

  it('returns an empty list for an empty parameter', () => {
    expect(parseScopeParameter('')).toEqual([]);
    expect(parseScopeParameter('   ')).toEqual([]);
  });

  it('reports errors against the scope field', () => {
    const err = expectRotorError(
      () => parseScopeParameter('read "write"'),
      'invalid_argument',
      'scope: each scope must be',
    );
    expect(err.details.field).toBe('scope');
  });

  it('refuses tabs as separators (RFC 6749 uses %x20 only)', () => {
    expectRotorError(() => parseScopeParameter('read\twrite'), 'invalid_argument', 'scope:');
  });

  it('refuses an oversized parameter before splitting it', () => {
    const err = expectRotorError(
      () => parseScopeParameter(' '.repeat(MAX_SCOPES * (MAX_SCOPE_LENGTH + 1) + 1)),
      'invalid_argument',
      'scope is too long',
    );
    expect(err.details.field).toBe('scope');
  });
});

describe('narrowScopes', () => {
  const held = ['read', 'write', SCOPE_ROTATE];

  it('keeps the held scopes when none are requested', () => {
    const out = narrowScopes(held, []);
    expect(out).toEqual(held);
    expect(out).not.toBe(held);
  });

  it('accepts a subset', () => {
    expect(narrowScopes(held, ['read'])).toEqual(['read']);
    expect(narrowScopes(held, [SCOPE_ROTATE, 'write'])).toEqual([SCOPE_ROTATE, 'write']);
  });

  it('accepts exactly the held set', () => {
    expect(narrowScopes(held, ['write', 'read', SCOPE_ROTATE])).toEqual(['write', 'read', SCOPE_ROTATE]);
  });

  it('refuses escalation with invalid_scope naming only the extra scopes', () => {
    const err = expectRotorError(
      () => narrowScopes(held, ['read', 'admin', SCOPE_ADMIN]),
      'invalid_scope',
      'requested scopes exceed the scopes held',
    );
    expect(err.message).toContain(`admin ${SCOPE_ADMIN}`);
    expect(err.message).not.toContain('read');
  });

  it('refuses escalation from an empty held set', () => {
    expectRotorError(() => narrowScopes([], ['read']), 'invalid_scope', 'read');
  });
});

describe('hasScope', () => {
  it('matches exact scope strings only', () => {
    expect(hasScope(['rotor:rotate'], SCOPE_ROTATE)).toBe(true);
    expect(hasScope(['rotor:rotat', 'rotor:rotate2'], SCOPE_ROTATE)).toBe(false);
    expect(hasScope([], SCOPE_ROTATE)).toBe(false);
  });
});
