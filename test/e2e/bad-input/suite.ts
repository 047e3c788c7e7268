/**
 * Runs one section of docs/bad-input.md (every bad input gets the documented answer): each case on every port it names
 * against a real server, then checks that nothing was answered INTERNAL / 500, that the server
 * logged no unexpected error and still serves, and that the doc lists exactly the rows of the
 * table under the section's heading. Each file of test/e2e/bad-input/ calls describeBadInput once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { GRANT_TOKEN_EXCHANGE } from '../../../src/domain/token-exchange.js';
import { HealthService } from '../../../src/gen/rotor/v1/health_service_pb.js';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { connectClient } from '../../support/connect-client.js';
import { ENGINES } from '../../support/engines.js';
import { grpcClient } from '../../support/grpc-client.js';
import { BAD_INPUT_SECTIONS, docRow, docRowsBySection, type BadInputSection } from './doc-table.js';
import {
  ACCESS,
  FORM,
  createRequest,
  f,
  formBody,
  s,
  startBadInputServer,
  stopBadInputServer,
  type Case,
  type HttpAnswer,
  type HttpExpect,
  type RpcAnswer,
  type RpcExpect,
} from './support.js';

// ---------------------------------------------------------------------------------------------
// Checks.

/** Every answer the table received, for the global "never Internal / 500" check. */
const answers: { engine: string; name: string; where: string; code?: number; status?: number }[] = [];

function presentedSecrets(): string[] {
  return [
    f.admin,
    f.live.secret,
    f.expired.secret,
    f.revoked.secret,
    f.reused.secret,
    f.familyRevoked.secret,
    f.unknown,
    f.badChecksum,
  ];
}

function checkRpc(where: string, name: string, a: RpcAnswer, e: RpcExpect): void {
  answers.push({ engine: s.engine, name, where, code: a.code });
  expect(a.code, `${where}: never Internal (${a.message})`).not.toBe(grpc.status.INTERNAL);
  expect(a.code, `${where}: code (message: ${a.message})`).toBe(e.code);
  if (e.message === '') expect(a.message).toBe('');
  else expect(a.message).toContain(e.message);
  for (const secret of presentedSecrets()) expect(a.message).not.toContain(secret);
  if (e.response) e.response(a.response as Record<string, unknown>);
}

function checkHttp(where: string, name: string, a: HttpAnswer, e: HttpExpect): void {
  answers.push({ engine: s.engine, name, where, status: a.status });
  expect(a.status, `${where}: never 500 (${a.text.slice(0, 200)})`).not.toBe(500);
  expect(a.status, `${where}: status (${a.text.slice(0, 200)})`).toBe(e.status);
  if (e.error !== undefined) {
    expect(a.headers.get('content-type')).toMatch(/^application\/json/);
    expect(a.headers.get('cache-control')).toBe('no-store');
    expect(a.json?.error).toBe(e.error);
    expect(String(a.json?.error_description)).toContain(e.description ?? '');
  }
  if (e.header) expect(a.headers.get(e.header[0]) ?? '').toContain(e.header[1]);
  if (e.body !== undefined) expect(a.text).toBe(e.body);
  if (e.json !== undefined) expect(a.json).toEqual(e.json);
  for (const secret of presentedSecrets()) expect(a.text).not.toContain(secret);
}

// ---------------------------------------------------------------------------------------------

/** The cases of `section` of docs/bad-input.md, in the doc's order, against one server per engine. */
export function describeBadInput(section: BadInputSection, cases: Case[]): void {
  describe.each(ENGINES)('bad input gets the documented answer on every port on %s', (engine) => {
    beforeAll(async () => {
      await startBadInputServer(engine);
    });
    afterAll(async () => {
      await stopBadInputServer();
    });

    for (const c of cases) {
      const test = c.fails ? it.fails : it;
      test(c.name, async () => {
        if (c.grpc) checkRpc('gRPC', c.name, await c.grpc.send(), c.grpc.expect);
        if (c.connect) checkRpc(c.connect.via ?? 'Connect', c.name, await c.connect.send(), c.connect.expect);
        if (c.http) checkHttp(c.http.via, c.name, await c.http.send(), c.http.expect);
      });
    }

    it('answered nothing with Internal or 500, and logged no unexpected error', () => {
      expect(answers.length).toBeGreaterThanOrEqual(cases.length);
      expect(answers.filter((a) => a.engine === engine).length).toBeGreaterThanOrEqual(cases.length);
      expect(answers.filter((a) => a.code === grpc.status.INTERNAL || a.status === 500)).toEqual([]);
      expect(s.logs.filter((l) => /unexpected error|unmapped error|rpc handler failed/.test(l))).toEqual([]);
    });

    it('still serves: Health Check on both ports and a successful CreateToken', async () => {
      const g = grpcClient(HealthService, s.grpcAddress);
      expect(((await g.call('check', {})) as { status: string }).status).toBe('SERVING');
      g.close();
      expect((await connectClient(HealthService, s.httpUrl).check({})).status).toBe('SERVING');
      const t = grpcClient(TokenService, s.grpcAddress);
      const created = (await t.call('createToken', createRequest()(), { token: f.admin })) as { secret: string };
      t.close();
      expect(created.secret).toMatch(/^rtr_prj_/);
      const viaConnect = await connectClient(TokenService, s.httpUrl, f.admin).createToken(createRequest()());
      expect(viaConnect.secret).toMatch(/^rtr_prj_/);
      // The untouched live token still rotates through the exchange endpoint: no failing case consumed it.
      const res = await fetch(`${s.httpUrl}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': FORM },
        body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: f.live.secret, subject_token_type: ACCESS }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { access_token: string }).access_token).toMatch(/^rtr_prj_/);
    });

    it('docs/bad-input.md lists exactly the rows of this table', () => {
      const doc = readFileSync(new URL('../../../docs/bad-input.md', import.meta.url), 'utf8');
      const sections = docRowsBySection(doc);
      // Every row of the doc sits under a heading that one file of this directory checks ...
      expect([...sections.keys()]).toEqual(BAD_INPUT_SECTIONS.map(([heading]) => heading));
      for (const [, file] of BAD_INPUT_SECTIONS)
        expect(existsSync(new URL(`./${file}`, import.meta.url)), file).toBe(true);
      // ... and this file's heading lists exactly its cases.
      expect(sections.get(section)).toEqual(cases.map(docRow));
    });
  });
}
