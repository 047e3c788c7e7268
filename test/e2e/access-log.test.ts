import * as http2 from 'node:http2';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthCheckRequestSchema } from '../../src/gen/grpc/health/v1/health_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { IntrospectTokenRequestSchema, TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { grpcFrame } from '../../bench/grpc.js';
import { ENGINES } from '../support/engines.js';
import { startTestIssuer, gitlabClaims, type TestIssuer } from '../support/jwt-issuer.js';
import { waitFor } from '../support/process.js';
import { connectApi, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

type Line = Record<string, unknown>;

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function accessLines(s: TestServer): Line[] {
  return s.logs.map((l) => JSON.parse(l) as Line).filter((l) => l.msg === 'access');
}

/** Waits for the one access line with this request id (HTTP lines are written when the response closes). */
function lineOf(s: TestServer, requestId: string): Promise<Line> {
  return waitFor(`the access line of ${requestId}`, () => {
    const found = accessLines(s).filter((l) => l.request_id === requestId);
    expect(found.length).toBeLessThanOrEqual(1);
    return found[0];
  });
}

/** A raw grpc-js unary call with chosen metadata; resolves with the status and the response headers. */
function grpcUnary(
  address: string,
  path: string,
  frame: Buffer,
  md: Record<string, string>,
): Promise<{ code: number; headers: Record<string, unknown>; trailers: Record<string, unknown> }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return new Promise((resolve) => {
    let headers: Record<string, unknown> = {};
    const call = client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      frame.subarray(5),
      metadata,
      (err) => {
        client.close();
        resolve({ code: err ? err.code : 0, headers, trailers: err?.metadata.getMap() ?? {} });
      },
    );
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m.getMap();
    });
  });
}

/** The response headers of one gRPC call made with node:http2 (what arrives, HPACK flags included). */
function rawResponseHeaders(address: string, path: string, frame: Buffer, authorization: string) {
  type Received = http2.IncomingHttpHeaders & { [http2.sensitiveHeaders]?: string[] };
  return new Promise<Received>((resolve, reject) => {
    const session = http2.connect(`http://${address}`);
    session.once('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization,
    });
    req.once('response', (headers) => {
      resolve(headers as Received);
      req.resume();
      req.once('end', () => session.close());
    });
    req.once('error', reject);
    req.end(frame);
  });
}

describe.each(ENGINES)('access log on %s', (engine) => {
  let s: TestServer;
  let adminId: string;
  let grpcCalls: Api;

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    grpcCalls = grpcApi(s);
    adminId = (await grpcCalls.introspectToken({ token: s.adminSecret }, s.adminSecret)).tokenId;
  });
  afterAll(async () => {
    grpcCalls?.close();
    await s?.stop();
  });

  it(`gRPC port (grpc-js): each field of a call that succeeded and of one that failed on ${engine}`, async () => {
    const path = `/${TokenService.typeName}/${TokenService.method.introspectToken.name}`;
    const frame = grpcFrame(IntrospectTokenRequestSchema, { token: s.adminSecret });
    const ok = await grpcUnary(s.grpcAddress, path, frame, {
      authorization: `Bearer ${s.adminSecret}`,
      'x-request-id': 'req-grpc-1',
      traceparent: TRACEPARENT,
    });
    expect(ok.code).toBe(0);
    expect(ok.headers['x-request-id']).toBe('req-grpc-1');
    // On the wire, a generated id comes never-indexed (HPACK), so it stays out of both ends' tables.
    const raw = await rawResponseHeaders(s.grpcAddress, path, frame, `Bearer ${s.adminSecret}`);
    expect(raw['x-request-id']).toMatch(UUID);
    expect(raw[http2.sensitiveHeaders]).toEqual(['x-request-id']);
    const line = await lineOf(s, 'req-grpc-1');
    expect(line).toEqual({
      level: 'info',
      time: expect.any(String),
      msg: 'access',
      transport: 'grpc',
      rpc: 'rotor.v1.TokenService/IntrospectToken',
      status: 0,
      code: 'ok',
      duration_ms: expect.any(Number),
      peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      request_id: 'req-grpc-1',
      traceparent: TRACEPARENT,
      token_id: adminId,
    });
    expect(line.duration_ms).toBeGreaterThanOrEqual(0);

    // No request id sent, a malformed traceparent, a bad bearer: a fresh id comes back with the error.
    const bad = await grpcUnary(s.grpcAddress, path, frame, {
      authorization: 'Bearer rtr_pat_not-a-token',
      traceparent: 'nonsense',
    });
    expect(bad.code).toBe(grpc.status.UNAUTHENTICATED);
    const id = bad.trailers['x-request-id'] as string;
    expect(id).toMatch(UUID);
    const failed = await lineOf(s, id);
    expect(failed).toMatchObject({ transport: 'grpc', status: 16, code: 'unauthenticated' });
    expect(failed.rotor_error).toBe('unauthenticated');
    expect(failed).not.toHaveProperty('token_id');
    expect(failed).not.toHaveProperty('traceparent');
  });

  it(`gRPC port: grpc.health.v1 (grpc-health-check's handlers) and a request id of the wrong shape on ${engine}`, async () => {
    const r = await grpcUnary(s.grpcAddress, '/grpc.health.v1.Health/Check', grpcFrame(HealthCheckRequestSchema, {}), {
      'x-request-id': 'has spaces and "quotes"',
    });
    expect(r.code).toBe(0);
    const id = r.headers['x-request-id'] as string;
    expect(id).toMatch(UUID);
    expect(await lineOf(s, id)).toMatchObject({ rpc: 'grpc.health.v1.Health/Check', status: 0, code: 'ok' });
  });

  it(`HTTP port, Connect protocol: each field, and a failure's code on ${engine}`, async () => {
    let sent = '';
    let returned: string | null = null;
    const transport = createConnectTransport({
      baseUrl: s.httpUrl,
      httpVersion: '1.1',
      interceptors: [
        (next) => async (req) => {
          req.header.set('x-request-id', sent);
          req.header.set('traceparent', TRACEPARENT);
          const res = await next(req);
          returned = res.header.get('x-request-id');
          return res;
        },
      ],
    });
    const client = createClient(TokenService, transport);
    sent = 'req-connect-1';
    const res = await client.introspectToken(
      { token: s.adminSecret },
      { headers: { authorization: `Bearer ${s.adminSecret}` } },
    );
    expect(res.active).toBe(true);
    expect(returned).toBe('req-connect-1');
    expect(await lineOf(s, 'req-connect-1')).toEqual({
      level: 'info',
      time: expect.any(String),
      msg: 'access',
      transport: 'http',
      rpc: 'rotor.v1.TokenService/IntrospectToken',
      status: 200,
      code: 'ok',
      duration_ms: expect.any(Number),
      peer: expect.stringMatching(/127\.0\.0\.1$/),
      request_id: 'req-connect-1',
      traceparent: TRACEPARENT,
      token_id: adminId,
    });

    sent = 'req-connect-2';
    await expect(
      client.getToken({ id: 'tok_doesnotexist' }, { headers: { authorization: `Bearer ${s.adminSecret}` } }),
    ).rejects.toThrow();
    expect(await lineOf(s, 'req-connect-2')).toMatchObject({
      rpc: 'rotor.v1.TokenService/GetToken',
      status: 404,
      code: 'not_found',
      rotor_error: 'not_found',
      token_id: adminId,
    });
  });

  it(`HTTP port, OAuth routes (oauth4webapi and fetch): route, method, status and the authenticated token on ${engine}`, async () => {
    const as: oauth.AuthorizationServer = {
      issuer: s.httpUrl,
      introspection_endpoint: `${s.httpUrl}/oauth/introspect`,
    };
    const opts = { [oauth.allowInsecureRequests]: true } as const;
    // The caller's bearer goes in as oauth4webapi's client authentication (it refuses it in `headers`).
    const bearer: oauth.ClientAuth = (_as, _client, _body, h) => void h.set('authorization', `Bearer ${s.adminSecret}`);
    const headers = new Headers({ 'x-request-id': 'req-oauth-1', traceparent: TRACEPARENT });
    const response = await oauth.introspectionRequest(as, { client_id: 'rotor-e2e' }, bearer, s.adminSecret, {
      ...opts,
      headers,
    });
    expect(response.headers.get('x-request-id')).toBe('req-oauth-1');
    expect((await oauth.processIntrospectionResponse(as, { client_id: 'rotor-e2e' }, response)).active).toBe(true);
    expect(await lineOf(s, 'req-oauth-1')).toEqual({
      level: 'info',
      time: expect.any(String),
      msg: 'access',
      transport: 'http',
      route: '/oauth/introspect',
      http_method: 'POST',
      status: 200,
      duration_ms: expect.any(Number),
      peer: expect.stringMatching(/127\.0\.0\.1$/),
      request_id: 'req-oauth-1',
      traceparent: TRACEPARENT,
      token_id: adminId,
    });

    // A path the client chose, with a secret in its query: logged as `other`, never as sent.
    const stray = await fetch(`${s.httpUrl}/oauth/nowhere?token=${s.adminSecret}`, {
      headers: { 'x-request-id': 'req-oauth-2' },
    });
    expect(stray.status).toBe(404);
    const other = await lineOf(s, 'req-oauth-2');
    expect(other).toMatchObject({ route: 'other', http_method: 'GET', status: 404 });
    expect(JSON.stringify(other)).not.toContain(s.adminSecret);
  });
});

describe('access log turned off (ROTOR_ACCESS_LOG=off) on sqlite', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_ACCESS_LOG: 'off' });
  });
  afterAll(async () => s?.stop());

  it('writes no access line and returns no request id on either port on sqlite', async () => {
    const api = grpcApi(s);
    try {
      await api.introspectToken({ token: s.adminSecret }, s.adminSecret);
      const health = await fetch(`${s.httpUrl}/healthz`);
      expect(health.status).toBe(200);
      expect(health.headers.get('x-request-id')).toBeNull();
      await connectApi(s).introspectToken({ token: s.adminSecret }, s.adminSecret);
      expect(accessLines(s)).toEqual([]);
    } finally {
      api.close();
    }
  });
});

/**
 * Every credential-like value of a full run (token secrets, idempotency keys, JWT access tokens,
 * a workload JWT used as an actor proof) and no log line may hold any of them. The server's lines
 * are captured raw (startTestServer turns both redaction nets off), so this sees what the code
 * tried to log, not what the nets caught.
 */
describe.each(ENGINES)('no secret, idempotency key, JWT or proof in any log line of a full run on %s', (engine) => {
  let s: TestServer;
  let ci: TestIssuer;
  beforeAll(async () => {
    ci = await startTestIssuer();
    const trust = writeTrustConfig({
      issuers: [{ issuer: ci.issuer, jwks_uri: ci.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] }],
    });
    s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
  });
  afterAll(async () => {
    await s?.stop();
    await ci?.close();
  });

  it(`create, rotate with an idempotency key (both ports), exchange, JWT, actor proof, introspect, revoke on ${engine}`, async () => {
    const sensitive: string[] = [s.adminSecret];
    const grpcCalls = grpcApi(s);
    const connectCalls = connectApi(s);
    try {
      const expiresAt = inMs(s.clock.now(), 86_400_000);
      const created = await grpcCalls.createToken(
        { kind: TokenKind.SERVICE_ACCOUNT, ownerId: 'svc', name: 'leak', scopes: ['rotor:rotate', 'read'], expiresAt },
        s.adminSecret,
      );
      sensitive.push(created.secret);
      const key1 = newKey();
      const key2 = newKey();
      sensitive.push(key1, key2);
      const r1 = await grpcCalls.rotateToken({ idempotencyKey: key1 }, created.secret);
      // The same key again: the retry gets the same successor.
      expect((await grpcCalls.rotateToken({ idempotencyKey: key1 }, created.secret)).secret).toBe(r1.secret);
      const r2 = await connectCalls.rotateToken({ idempotencyKey: key2 }, r1.secret);
      sensitive.push(r1.secret, r2.secret);

      // RFC 8693 over HTTP with an idempotency key, then a JWT access token for the new token.
      const key3 = newKey();
      sensitive.push(key3);
      const exchanged = await fetch(`${s.httpUrl}/oauth/token`, {
        method: 'POST',
        headers: { 'idempotency-key': key3 },
        body: new URLSearchParams({ grant_type: GRANT, subject_token_type: ACCESS_TOKEN, subject_token: r2.secret }),
      });
      const ex = (await exchanged.json()) as { access_token: string; token_id: string };
      expect(exchanged.status).toBe(200);
      sensitive.push(ex.access_token);
      const jwtRes = await fetch(`${s.httpUrl}/oauth/token`, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: GRANT,
          subject_token_type: ACCESS_TOKEN,
          subject_token: ex.access_token,
          requested_token_type: JWT_TYPE,
        }),
      });
      const jwt = ((await jwtRes.json()) as { access_token: string }).access_token;
      expect(jwtRes.status).toBe(200);
      sensitive.push(jwt);
      issuedSecrets.add(jwt);

      // A token bound to a workload, rotated with the workload's JWT as the actor proof.
      const bound = await grpcCalls.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc',
          name: 'bound',
          scopes: ['rotor:rotate'],
          expiresAt,
          policy: {
            workloadBinding: { issuer: ci.issuer, subject: gitlabClaims(ci.issuer).sub as string, audience: 'rotor' },
          },
        },
        s.adminSecret,
      );
      sensitive.push(bound.secret);
      const proof = await ci.sign(s.clock.now(), { aud: 'rotor' });
      sensitive.push(proof);
      const key4 = newKey();
      sensitive.push(key4);
      const boundNext = await grpcCalls.rotateToken(
        { idempotencyKey: key4, actorToken: proof, actorTokenType: JWT_TYPE },
        bound.secret,
      );
      sensitive.push(boundNext.secret);

      // Introspection of a secret and of the JWT, on both ports and over HTTP; then revocation.
      expect((await grpcCalls.introspectToken({ token: ex.access_token }, s.adminSecret)).active).toBe(true);
      expect((await connectCalls.introspectToken({ token: jwt }, s.adminSecret)).active).toBe(true);
      const intro = await fetch(`${s.httpUrl}/oauth/introspect`, {
        method: 'POST',
        headers: { authorization: `Bearer ${s.adminSecret}` },
        body: new URLSearchParams({ token: boundNext.secret }),
      });
      expect(intro.status).toBe(200);
      const revoked = await fetch(`${s.httpUrl}/oauth/revoke`, {
        method: 'POST',
        body: new URLSearchParams({ token: ex.access_token }),
      });
      expect(revoked.status).toBe(200);
      for (const x of sensitive) issuedSecrets.add(x);

      // Every call above has its line (so the scan below looks at a log that recorded the run)…
      await waitFor('the revocation access line', () =>
        accessLines(s).some((l) => l.route === '/oauth/revoke' && l.status === 200),
      );
      const lines = accessLines(s);
      expect(lines.filter((l) => l.rpc === 'rotor.v1.TokenService/RotateToken')).toHaveLength(4);
      expect(lines.filter((l) => l.route === '/oauth/token')).toHaveLength(2);
      // Self-rotations and exchanges name the token presented (the caller's credential).
      expect(lines.filter((l) => l.rpc === 'rotor.v1.TokenService/RotateToken').map((l) => l.token_id)).toEqual([
        created.token!.id,
        created.token!.id,
        r1.token!.id,
        bound.token!.id,
      ]);
      expect(lines.filter((l) => l.route === '/oauth/token').map((l) => l.token_id)).toEqual([
        r2.token!.id,
        ex.token_id,
      ]);
      // …and no line holds any of the values, whole or as the body of a JWT.
      const log = s.logs.join('');
      const pieces = sensitive.flatMap((v) =>
        v.split('.').length === 3 ? [v, v.split('.')[1]!, v.split('.')[2]!] : [v],
      );
      expect(pieces.filter((p) => log.includes(p))).toEqual([]);
    } finally {
      grpcCalls.close();
    }
  });
});
