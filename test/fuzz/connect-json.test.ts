/**
 * Fuzzes the Connect JSON bodies of every TokenService and TokenExchangeService method on the HTTP
 * port: arbitrary JSON values, objects of the method's own fields with values of any type (and
 * unknown fields), and raw bytes, sent with `application/json` and a bearer token that is the
 * admin's, missing or garbage. Every answer is below 500 with a Connect error code that
 * src/api/connect-errors.ts can produce (never `internal`), a refused call writes nothing, and the
 * server still serves afterwards.
 */
import { type DescField, type DescMethod, ScalarType } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { anyText, bytes, fieldValue, rpcBearer } from './arbitraries.js';
import { DOCUMENTED_CODE_NAMES, expectServing, fuzzParams, rowCounts } from './support.js';

const METHODS: DescMethod[] = [...TokenService.methods, ...TokenExchangeService.methods];

/** A JSON value of any type a proto3 JSON field may (or may not) accept. */
const jsonFieldValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fieldValue },
  { weight: 2, arbitrary: fc.array(fieldValue, { maxLength: 5 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      0,
      -1,
      99,
      501,
      2 ** 31,
      -(2 ** 63),
      '9223372036854775808',
      1.5,
      'NaN',
      true,
      null,
      'TOKEN_KIND_PROJECT',
      'TOKEN_STATE_ACTIVE',
      '2030-01-01T00:00:00Z',
      '1970-01-01T00:00:00Z',
      '9999-12-31T23:59:59Z',
      '10000-01-01T00:00:00Z',
      '3600s',
      '-1s',
      {},
      [],
      [[]],
      { seconds: 1 },
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** A value of the field's own JSON type (so the body decodes and reaches validation), or any value. */
function typedValue(f: DescField): fc.Arbitrary<unknown> {
  const timestamp = fc.oneof(
    fc.constantFrom('2030-01-01T00:00:00Z', '1970-01-01T00:00:00Z', '9999-12-31T23:59:59Z', '2000-02-30T00:00:00Z'),
    fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  );
  const one = (
    kind: 'scalar' | 'enum' | 'message',
    scalar: ScalarType | undefined,
    typeName: string | undefined,
  ): fc.Arbitrary<unknown> => {
    if (kind === 'enum')
      return fc.oneof(fc.integer({ min: -2, max: 100 }), fc.constantFrom('TOKEN_KIND_PROJECT', 'TOKEN_STATE_ACTIVE'));
    if (kind === 'message') {
      if (typeName === 'google.protobuf.Timestamp') return timestamp;
      if (typeName === 'google.protobuf.Duration') return fc.constantFrom('0s', '1s', '-1s', '3600s', '315576000000s');
      return fc.dictionary(anyText, jsonFieldValue, { maxKeys: 2 });
    }
    switch (scalar) {
      case ScalarType.STRING:
        return fieldValue;
      case ScalarType.BOOL:
        return fc.boolean();
      case ScalarType.INT32:
        return fc.oneof(fc.integer(), fc.constantFrom(0, -1, 500, 501));
      default:
        return fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), fc.nat());
    }
  };
  if (f.fieldKind === 'list') {
    return fc.array(one(f.listKind, f.scalar, f.message?.typeName), { maxLength: 70 });
  }
  if (f.fieldKind === 'map') return fc.dictionary(anyText, fieldValue, { maxKeys: 3 });
  return one(f.fieldKind, f.scalar, f.message?.typeName);
}

function typedObject(method: DescMethod): fc.Arbitrary<string> {
  const fields = method.input.fields;
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of fields) record[f.jsonName] = typedValue(f);
  return fc.record(record, { requiredKeys: [] }).map((o) => JSON.stringify(o));
}

function jsonBody(method: DescMethod): fc.Arbitrary<string | Buffer> {
  const names = method.input.fields.flatMap((f: DescField) => [f.jsonName, f.name]);
  const key =
    names.length > 0
      ? fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: anyText })
      : anyText;
  return fc.oneof(
    { weight: 10, arbitrary: typedObject(method) },
    { weight: 3, arbitrary: fc.dictionary(key, jsonFieldValue, { maxKeys: 6 }).map((o) => JSON.stringify(o)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
    { weight: 1, arbitrary: bytes },
  );
}

describe('fuzz: Connect JSON bodies on sqlite', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  it.each(METHODS.map((m) => [`${m.parent.typeName}/${m.name}`, m] as const))(
    '%s answers every JSON body below 500 with a documented Connect code',
    async (_, method) => {
      const path = `/${method.parent.typeName}/${method.name}`;
      await fc.assert(
        fc.asyncProperty(jsonBody(method), rpcBearer, async (body, auth) => {
          // The admin presenting itself to RotateToken (no id) would rotate the fixture's own token.
          if (method.name === 'RotateToken' && auth === 'admin') auth = undefined;
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          if (auth !== undefined) headers.authorization = auth === 'admin' ? `Bearer ${s.adminSecret}` : auth;
          const before = await rowCounts(s);
          const r = await fetch(`${s.httpUrl}${path}`, { method: 'POST', headers, body });
          const text = await r.text();
          expect(r.status, text).toBeLessThan(500);
          if (r.status !== 200) {
            const json = JSON.parse(text) as { code?: unknown; message?: unknown };
            expect(DOCUMENTED_CODE_NAMES, text).toContain(json.code);
            expect(await rowCounts(s)).toEqual(before);
          }
        }),
        fuzzParams(150),
      );
      await expectServing(s);
      // A valid call still succeeds.
      const ok = await fetch(`${s.httpUrl}/rotor.v1.TokenService/ListTokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${s.adminSecret}` },
        body: '{"pageSize": 1}',
      });
      expect(ok.status, await ok.clone().text()).toBe(200);
      await ok.arrayBuffer();
    },
  );
});
