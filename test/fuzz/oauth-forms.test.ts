/**
 * Fuzzes the OAuth endpoints (POST /oauth/token, /oauth/introspect, /oauth/revoke) with arbitrary
 * form bodies: random and known keys, duplicates, unicode, values at the field limits and past the
 * 64 KB body limit, random content types and raw bytes. Every answer is below 500, every refusal is
 * a JSON RFC 6749 §5.2 error with a known `error` code, a refused call writes nothing, and the
 * server still serves afterwards.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { anyText, bytes, fieldValue } from './arbitraries.js';
import { expectServing, fuzzParams, rowCounts } from './support.js';

/** RFC 6749 §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1 and RFC 8693 §2.2.2 codes. */
const OAUTH_ERRORS = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_token',
  'insufficient_scope',
  'unsupported_token_type',
  'invalid_target',
];

const KEYS = [
  'grant_type',
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'scope',
  'audience',
  'resource',
  'idempotency_key',
  'token',
  'token_type_hint',
];

const FORM = 'application/x-www-form-urlencoded';

/** A request body and its content type. */
interface Body {
  contentType: string | undefined;
  body: Buffer | string;
}

const pairs = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...KEYS), anyText), fieldValue), { maxLength: 12 });

const body: fc.Arbitrary<Body> = fc.oneof(
  // Well-encoded forms of random pairs (duplicates included).
  { weight: 6, arbitrary: pairs.map((p) => ({ contentType: FORM, body: new URLSearchParams(p).toString() })) },
  // Hand-joined pairs: raw '%', '&' and '=' in keys and values, bad percent-escapes.
  {
    weight: 2,
    arbitrary: pairs.map((p) => ({ contentType: FORM, body: p.map(([k, v]) => `${k}=${v}`).join('&') })),
  },
  // Raw bytes, often invalid UTF-8.
  { weight: 2, arbitrary: bytes.map((b) => ({ contentType: FORM, body: b })) },
  // Other content types, with a form body.
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.oneof(
          fc.constantFrom(
            undefined,
            '',
            'application/json',
            'text/plain',
            'multipart/form-data; boundary=x',
            'APPLICATION/X-WWW-FORM-URLENCODED',
            `${FORM}; charset=latin1`,
            `${FORM};;;`,
            ';',
          ),
          fc.string({ unit: fc.constantFrom('a', '/', ';', '=', ' ', 'x', '-', '+', '*'), maxLength: 30 }),
        ),
        pairs,
      )
      .map(([contentType, p]) => ({ contentType, body: new URLSearchParams(p).toString() })),
  },
  // Around the 64 KB body limit.
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.constantFrom('token', 'subject_token', 'scope', 'audience'),
        fc.integer({ min: 64 * 1024 - 40, max: 64 * 1024 + 40 }),
      )
      .map(([k, n]) => ({ contentType: FORM, body: `${k}=${'a'.repeat(n)}` })),
  },
);

/** What the bearer header of an introspection says: admin, none, or garbage. */
const authorization = fc.oneof(
  fc.constant('admin'),
  fc.constant(undefined),
  fc.string({ unit: fc.constantFrom('B', 'e', 'a', 'r', ' ', 'x', '_', '.', '='), maxLength: 30 }),
);

const ENDPOINTS = ['/oauth/token', '/oauth/introspect', '/oauth/revoke'] as const;

describe('fuzz: OAuth form bodies on sqlite', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  async function post(path: string, b: Body, auth: string | undefined) {
    const headers: Record<string, string> = {};
    if (b.contentType !== undefined) headers['content-type'] = b.contentType;
    if (auth !== undefined) headers.authorization = auth === 'admin' ? `Bearer ${s.adminSecret}` : auth;
    const r = await fetch(`${s.httpUrl}${path}`, { method: 'POST', headers, body: b.body });
    return { status: r.status, contentType: r.headers.get('content-type') ?? '', text: await r.text() };
  }

  it.each(ENDPOINTS)(
    '%s answers every body below 500 with an RFC 6749 error, writing nothing when it refuses',
    async (path) => {
      await fc.assert(
        fc.asyncProperty(body, authorization, async (b, auth) => {
          const before = await rowCounts(s);
          const r = await post(path, b, auth);
          expect(r.status, r.text).toBeLessThan(500);
          if (r.status >= 400) {
            expect(r.contentType).toMatch(/^application\/json/);
            const json = JSON.parse(r.text) as { error?: unknown; error_description?: unknown };
            expect(OAUTH_ERRORS).toContain(json.error);
            expect(typeof json.error_description).toBe('string');
            expect(await rowCounts(s)).toEqual(before);
          }
        }),
        fuzzParams(400),
      );
      await expectServing(s);
      // A valid call still succeeds: the admin introspects its own token.
      const ok = await post(
        '/oauth/introspect',
        { contentType: FORM, body: new URLSearchParams({ token: s.adminSecret }).toString() },
        'admin',
      );
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.text)).toMatchObject({ active: true });
    },
  );
});
