/**
 * Fuzzes the token secret parser (src/domain/token-secret.ts): whatever string is presented,
 * parseSecret either accepts it or throws RotorError `invalid_token` with a message that does not
 * echo the input; nothing else may escape.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isRotorError } from '../../src/domain/errors.js';
import { SECRET_PREFIX, TOKEN_KINDS } from '../../src/domain/token-kind.js';
import { BASE62, formatSecret, MAX_SECRET_LENGTH, parseSecret } from '../../src/domain/token-secret.js';
import { fuzzParams } from './support.js';

const MESSAGES = ['token is empty', 'token is malformed', 'token checksum does not match'];

/** Accepts, or refuses with invalid_token; returns whether it accepted. */
function parsesOrRefuses(input: string): boolean {
  try {
    const parsed = parseSecret(input);
    expect(parsed.secret).toBe(input);
    return true;
  } catch (e) {
    if (!isRotorError(e)) throw new Error(`parseSecret threw a non-RotorError: ${String(e)}`);
    expect(e.code).toBe('invalid_token');
    expect(MESSAGES).toContain(e.message);
    return false;
  }
}

const base62Char = fc.constantFrom(...BASE62.split(''));
const prefix = fc.constantFrom(...TOKEN_KINDS.map((k) => SECRET_PREFIX[k]));
/** Near misses: a real prefix followed by base62-ish text of about the right length. */
const nearMiss = fc
  .tuple(
    prefix,
    fc.string({ unit: fc.oneof(base62Char, fc.constantFrom('_', '-', '\u0000', 'é', '😀', ' ')), maxLength: 60 }),
  )
  .map(([p, rest]) => p + rest);

describe('fuzz: parseSecret', () => {
  it('arbitrary strings (any unicode, up to twice the limit) only ever give invalid_token', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 2 * MAX_SECRET_LENGTH }), (input) => {
        parsesOrRefuses(input);
      }),
      fuzzParams(5000),
    );
  });

  it('near misses (real prefix, base62-ish body) only ever give invalid_token', () => {
    fc.assert(
      fc.property(nearMiss, (input) => {
        parsesOrRefuses(input);
      }),
      fuzzParams(5000),
    );
  });

  it('a valid secret with one character changed is refused', () => {
    const secrets = TOKEN_KINDS.map((k) => formatSecret(k, (n) => crypto.getRandomValues(new Uint8Array(n))));
    fc.assert(
      fc.property(
        fc.constantFrom(...secrets),
        fc.nat(),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
        (secret, at, c) => {
          const i = at % secret.length;
          fc.pre(secret[i] !== c);
          const changed = secret.slice(0, i) + c + secret.slice(i + 1);
          // CRC-32 detects every single-character change in the body and checksum.
          expect(parsesOrRefuses(changed)).toBe(false);
        },
      ),
      fuzzParams(2000),
    );
  });

  it('values that are not strings give invalid_token too (callers outside TypeScript)', () => {
    fc.assert(
      fc.property(fc.anything(), (input) => {
        fc.pre(typeof input !== 'string');
        expect(() => parseSecret(input as string)).toThrow(expect.objectContaining({ code: 'invalid_token' }));
      }),
      fuzzParams(500),
    );
  });
});
