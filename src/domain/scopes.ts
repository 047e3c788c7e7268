import { RotorError } from './errors.js';

/** Reserved scopes (docs/rotation.md, "Who may do what"): manage every token, rotate oneself, introspect others; read GET /metrics when it asks for a token. */
export const SCOPE_ADMIN = 'rotor:admin';
export const SCOPE_ROTATE = 'rotor:rotate';
export const SCOPE_INTROSPECT = 'rotor:introspect';
export const SCOPE_METRICS = 'rotor:metrics';

export const MAX_SCOPES = 64;
export const MAX_SCOPE_LENGTH = 128;
/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/** Validates and de-duplicates a scope list, keeping the caller's order. */
export function normalizeScopes(scopes: readonly string[], field = 'scopes'): string[] {
  if (scopes.length > MAX_SCOPES) {
    throw new RotorError('invalid_argument', `${field}: at most ${MAX_SCOPES} scopes`, { field });
  }
  const out: string[] = [];
  for (const s of scopes) {
    if (s.length > MAX_SCOPE_LENGTH || !SCOPE_TOKEN.test(s)) {
      throw new RotorError(
        'invalid_argument',
        `${field}: each scope must be 1-${MAX_SCOPE_LENGTH} printable characters without spaces, quotes or backslashes`,
        { field },
      );
    }
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

/** RFC 6749 §3.3 / RFC 8693 §2.1: the `scope` parameter is a space-delimited list. */
export function parseScopeParameter(scope: string): string[] {
  if (scope.length > MAX_SCOPES * (MAX_SCOPE_LENGTH + 1)) {
    throw new RotorError('invalid_argument', 'scope is too long', { field: 'scope' });
  }
  return normalizeScopes(
    scope.split(' ').filter((s) => s.length > 0),
    'scope',
  );
}

/**
 * Narrowing only (docs/rotation.md rule 5): the requested scopes must all be held. An empty
 * request keeps the held scopes. Escalation is `invalid_scope`.
 */
export function narrowScopes(held: readonly string[], requested: readonly string[]): string[] {
  if (requested.length === 0) return [...held];
  const extra = requested.filter((s) => !held.includes(s));
  if (extra.length > 0) {
    throw new RotorError('invalid_scope', `requested scopes exceed the scopes held: ${extra.join(' ')}`);
  }
  return [...requested];
}

/** True when `scopes` includes `scope`. */
export function hasScope(scopes: readonly string[], scope: string): boolean {
  return scopes.includes(scope);
}
