/** Input generators shared by the network fuzz files: strings, secrets and values near the field limits. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, GRANT_TOKEN_EXCHANGE } from '../../src/domain/token-exchange.js';
import { TOKEN_KINDS } from '../../src/domain/token-kind.js';
import { formatSecret } from '../../src/domain/token-secret.js';

/** Well-formed secrets with a valid checksum that were never issued: they reach the store lookup. */
export const UNKNOWN_SECRETS = TOKEN_KINDS.map((k) => formatSecret(k, (n) => new Uint8Array(randomBytes(n))));

/** Strings a validator may meet: any unicode, control and format characters, lone surrogates. */
export const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({
    unit: fc.constantFrom('a', ' ', '"', '\\', '%', '&', '=', '+', '\u0000', '\u202e', '\u009b', '\ud800', '😀'),
    maxLength: 40,
  }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
);

/** Strings of a length around the documented limits (128, 256, 1024, 8192 characters). */
export const longText = fc
  .tuple(
    fc.constantFrom(127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 8191, 8192, 8193),
    fc.constantFrom('a', 'é', '😀', '%'),
  )
  .map(([n, c]) => c.repeat(n));

/** Values that mean something to Rotor, so the generated requests get past the first checks. */
export const meaningful = fc.constantFrom(
  GRANT_TOKEN_EXCHANGE,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  'urn:ietf:params:oauth:token-type:id_token',
  'authorization_code',
  'read write rotor:rotate',
  'https://api.example',
  'access_token',
  'refresh_token',
  ...UNKNOWN_SECRETS,
  'rtr_prj_this-is-not-a-token',
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
);

export const fieldValue = fc.oneof(
  { weight: 3, arbitrary: meaningful },
  { weight: 3, arbitrary: anyText },
  { weight: 1, arbitrary: longText },
);

/** Random bytes, sometimes invalid UTF-8. */
export const bytes = fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b));

/**
 * Bearer credentials for an RPC: `'admin'` (the test server's admin secret), none, garbage, or
 * well-formed but never issued.
 */
export const rpcBearer = fc.oneof(
  fc.constant<'admin' | undefined>('admin'),
  fc.constant<'admin' | undefined>(undefined),
  fc.constantFrom('Bearer', 'Bearer ', 'Basic abc', `Bearer ${UNKNOWN_SECRETS[0]}`, 'Bearer rtr_prj_x'),
);
