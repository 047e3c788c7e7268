/**
 * Fuzzes ROTOR_TRUST_CONFIG validation (src/identity/trust-config.ts parseTrustConfig): any JSON
 * document, and any one-field mutation of valid documents, is accepted or refused with
 * TrustConfigError; no other exception (a TypeError from an unchecked shape) may escape.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { parseTrustConfig, TrustConfigError } from '../../src/identity/trust-config.js';
import { fuzzParams } from './support.js';

const MAX_LIFETIME = 365 * 86_400;

function parsesOrRefuses(doc: unknown): void {
  try {
    parseTrustConfig(doc, MAX_LIFETIME);
  } catch (e) {
    if (e instanceof TrustConfigError) return;
    throw new Error(`parseTrustConfig threw ${String(e)} instead of TrustConfigError`);
  }
}

const publicJwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });

/** Valid documents covering discovery, jwks_uri and inline jwks issuers and a federation rule. */
const VALID = [
  {
    issuers: [{ issuer: 'https://ci.example', discovery: true, audiences: ['rotor'], algorithms: ['RS256', 'ES256'] }],
    federation: [
      {
        issuer: 'https://ci.example',
        subject: 'project_path:group/app:*',
        audience: 'rotor',
        claims: { namespace_id: '42' },
        service_account: 'sa-deployer',
        scopes: ['deploy'],
        max_lifetime_seconds: 3600,
      },
    ],
  },
  { issuers: [{ issuer: 'https://k8s.example', jwks_uri: 'https://k8s.example/keys', audiences: ['rotor'] }] },
  {
    issuers: [
      { issuer: 'https://inline.example', jwks: { keys: [{ ...publicJwk, kid: 'k1' }] }, audiences: ['rotor'] },
    ],
  },
];

type Json = unknown;

/** Every path (list of keys/indices) to a value inside `v`, the root included. */
function paths(v: Json, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) out.push(...paths(x, [...at, i]));
  } else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

function replaceAt(v: Json, path: (string | number)[], value: Json): Json {
  if (path.length === 0) return value;
  const [head, ...rest] = path;
  // A new key only goes into objects: on an array a key such as `length` would break the copy, not the parser.
  if (Array.isArray(v) && typeof head !== 'number') return v;
  if (typeof v !== 'object' || v === null) return v;
  const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, Json>;
  copy[head as string] = replaceAt(copy[head as string], rest, value);
  return copy;
}

/** Values that stress validators: wrong types, edge numbers, odd strings, prototype-ish keys. */
const nasty: fc.Arbitrary<Json> = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    null,
    true,
    0,
    -1,
    1.5,
    Number.MAX_SAFE_INTEGER + 2,
    '',
    ' ',
    '*',
    'http://x',
    'https://',
    '\u0000',
    '__proto__',
    [],
    {},
    [null],
    { keys: null },
    { keys: [{}] },
    { __proto__: null },
  ),
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'toString', 'kty', 'keys', 'issuer'), fc.jsonValue()),
);

describe('fuzz: parseTrustConfig', () => {
  it('any JSON value is accepted or refused with TrustConfigError', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), parsesOrRefuses), fuzzParams(3000));
  });

  it('valid documents with one value replaced (or a field added) give TrustConfigError only', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...VALID),
        fc.nat(),
        nasty,
        fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
        (doc, pick, value, newKey) => {
          const all = paths(doc);
          const path = all[pick % all.length] as (string | number)[];
          // With newKey: add a field next to the picked one (inside objects only).
          const target = newKey === undefined ? path : [...path, newKey];
          parsesOrRefuses(replaceAt(doc, target, value));
        },
      ),
      fuzzParams(5000),
    );
  });

  it('valid documents with two values replaced give TrustConfigError only', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VALID), fc.nat(), fc.nat(), nasty, nasty, (doc, p1, p2, v1, v2) => {
        const all = paths(doc);
        const once = replaceAt(doc, all[p1 % all.length] as (string | number)[], v1);
        const again = paths(once);
        parsesOrRefuses(replaceAt(once, again[p2 % again.length] as (string | number)[], v2));
      }),
      fuzzParams(3000),
    );
  });
});
