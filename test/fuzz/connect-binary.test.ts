/**
 * Fuzzes the Connect binary bodies (`application/proto`) of every unary method on the HTTP port
 * (TokenService, TokenExchangeService, HealthService): messages of the method's own input type,
 * the same encodings mutated (bytes changed, cut short, unknown fields, wrong wire types, invalid
 * UTF-8, lying length prefixes) and random bytes (test/fuzz/proto-messages.ts), with a bearer token
 * that is the admin's, missing or garbage. Every answer is below 500 with a Connect error code that
 * src/api/connect-errors.ts can produce (never `internal`), a refused call writes nothing, and the
 * server still serves afterwards.
 */
import type { DescMethod } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { rpcBearer } from './arbitraries.js';
import { protoBody } from './proto-messages.js';
import { DOCUMENTED_CODE_NAMES, expectServing, fuzzParams, rowCounts } from './support.js';

const METHODS: DescMethod[] = [...TokenService.methods, ...TokenExchangeService.methods, ...HealthService.methods];

describe('fuzz: Connect binary bodies on sqlite', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s?.stop();
  });

  it.each(METHODS.map((m) => [`${m.parent.typeName}/${m.name}`, m] as const))(
    '%s answers every application/proto body below 500 with a documented Connect code',
    async (_, method) => {
      const path = `/${method.parent.typeName}/${method.name}`;
      await fc.assert(
        fc.asyncProperty(protoBody(method.input), rpcBearer, async (body, auth) => {
          // The admin presenting itself to RotateToken (no id) would rotate the fixture's own token.
          if (method.name === 'RotateToken' && auth === 'admin') auth = undefined;
          const headers: Record<string, string> = { 'content-type': 'application/proto' };
          if (auth !== undefined) headers.authorization = auth === 'admin' ? `Bearer ${s.adminSecret}` : auth;
          const before = await rowCounts(s);
          const r = await fetch(`${s.httpUrl}${path}`, { method: 'POST', headers, body });
          const answer = Buffer.from(await r.arrayBuffer());
          expect(r.status, answer.toString()).toBeLessThan(500);
          if (r.status !== 200) {
            // Connect unary errors are JSON whatever the request's codec.
            const json = JSON.parse(answer.toString()) as { code?: unknown; message?: unknown };
            expect(DOCUMENTED_CODE_NAMES, answer.toString()).toContain(json.code);
            expect(await rowCounts(s)).toEqual(before);
          } else {
            expect(r.headers.get('content-type')).toBe('application/proto');
          }
        }),
        fuzzParams(150),
      );
      await expectServing(s);
      // A valid binary call still succeeds: ListTokens { page_size: 1 } is field 5, varint 1.
      const ok = await fetch(`${s.httpUrl}/rotor.v1.TokenService/ListTokens`, {
        method: 'POST',
        headers: { 'content-type': 'application/proto', authorization: `Bearer ${s.adminSecret}` },
        body: Buffer.from([0x28, 0x01]),
      });
      expect(ok.status, await ok.clone().text()).toBe(200);
      await ok.arrayBuffer();
    },
  );
});
