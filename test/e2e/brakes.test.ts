/**
 * The brakes of docs/limits.md, end to end over grpc-js, Connect and oauth4webapi:
 *
 * - failed authentications per peer: the (N+1)-th failure is refused with RESOURCE_EXHAUSTED, a
 *   `retry-after` header and a google.rpc.RetryInfo detail (HTTP 429 with Retry-After on the OAuth
 *   endpoints), and so is every call of that peer until the window ends (moved with the test
 *   clock); a good credential from another peer (Connect from 127.0.0.2) is never refused;
 *   successes, refusals of a good credential and calls without any credential do not count;
 * - tokens minted per owner and rotations per family;
 * - PostgreSQL: two `rotor serve` replicas share the counters; the counters' store cut off (the
 *   TCP proxy of database-loss.test.ts) fails open, counted in /metrics and logged.
 */
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type * as grpc from '@grpc/grpc-js';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRetryInfoMs } from '../../src/api/retry-info.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { connectClient } from '../support/connect-client.js';
import { describeOnPostgres, ENGINES, TEST_POSTGRES_URL } from '../support/engines.js';
import { grpcClient } from '../support/grpc-client.js';
import { waitFor } from '../support/process.js';
import { addressOf, startReplicas, type ReplicaSet } from '../support/replicas.js';
import { failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { hostPortOf, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

/** Failed authentications a peer may make per window in these tests. */
const N = 3;
const WINDOW_S = 60;
const BAD_BEARER = 'not-a-rotor-token';
const LIMITED = /^too many failed authentications from this address; retry after \d+ s$/;

/** The RetryInfo delay (ms) in a grpc-js error's `grpc-status-details-bin` (a google.rpc.Status). */
function grpcRetryDelayMs(err: grpc.ServiceError): number | undefined {
  const bin = err.metadata.get('grpc-status-details-bin')[0];
  if (!(bin instanceof Buffer)) return undefined;
  const status = new BinaryReader(bin);
  while (status.pos < status.len) {
    const [field, wire] = status.tag();
    if (field !== 3) {
      status.skip(wire);
      continue;
    }
    const any = new BinaryReader(status.bytes());
    let type = '';
    let value: Uint8Array | undefined;
    while (any.pos < any.len) {
      const [f, w] = any.tag();
      if (f === 1) type = any.string();
      else if (f === 2) value = any.bytes();
      else any.skip(w);
    }
    if (type === 'type.googleapis.com/google.rpc.RetryInfo' && value) return decodeRetryInfoMs(value);
  }
  return undefined;
}

async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected the gRPC call to fail');
}

async function connectError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error('expected the Connect call to fail');
}

/** A sample of GET /metrics, by series name with labels. */
async function metric(s: TestServer, series: string): Promise<number> {
  const text = await (await fetch(`${s.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no ${series} in /metrics`);
  return Number(line.slice(series.length + 1));
}

describe.each(ENGINES)('brakes over grpc-js, Connect and oauth4webapi on %s', (engine) => {
  let s: TestServer;
  let tokens: ReturnType<typeof grpcClient<typeof TokenService>>;
  /** Connect from another loopback address: another peer. */
  let otherPeer: ReturnType<typeof createClient<typeof TokenService>>;
  let as: oauth.AuthorizationServer;
  const client: oauth.Client = { client_id: 'rotor-e2e' };
  const opts = { [oauth.allowInsecureRequests]: true } as const;
  const asAdmin: oauth.ClientAuth = (_as, _client, _body, headers) =>
    void headers.set('authorization', `Bearer ${s.adminSecret}`);

  beforeAll(async () => {
    s = await startTestServer(
      {
        ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: String(N),
        ROTOR_RATE_LIMIT_FAILED_AUTH_WINDOW_SECONDS: String(WINDOW_S),
        ROTOR_RATE_LIMIT_MINTS_PER_OWNER: '2',
        ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY: '2',
      },
      { engine },
    );
    tokens = grpcClient(TokenService, s.grpcAddress);
    otherPeer = createClient(
      TokenService,
      createConnectTransport({ baseUrl: s.httpUrl, httpVersion: '1.1', nodeOptions: { localAddress: '127.0.0.2' } }),
    );
    as = {
      issuer: s.httpUrl,
      token_endpoint: `${s.httpUrl}/oauth/token`,
      introspection_endpoint: `${s.httpUrl}/oauth/introspect`,
    };
  });
  afterAll(async () => {
    tokens?.close();
    await s?.stop();
  });

  const introspectSelf = (bearer: string) =>
    tokens.call('introspectToken', { token: s.adminSecret }, { token: bearer });

  it(`refuses the ${N + 1}th failed authentication of a peer until Retry-After, never another peer on ${engine}`, async () => {
    for (let i = 0; i < N; i++) {
      expect((await grpcError(introspectSelf(BAD_BEARER))).code).toBe(Code.Unauthenticated);
    }
    const refused = await grpcError(introspectSelf(BAD_BEARER));
    expect(refused.code).toBe(Code.ResourceExhausted);
    expect(refused.details).toMatch(LIMITED);
    expect(refused.metadata.get('rotor-error')).toEqual(['rate_limited']);
    const retryAfter = Number(refused.metadata.get('retry-after')[0]);
    expect(retryAfter).toBeGreaterThan(10);
    expect(retryAfter).toBeLessThanOrEqual(WINDOW_S);
    expect(grpcRetryDelayMs(refused)).toBe(retryAfter * 1000);

    // The peer is refused whatever it presents, on either port, until the window ends.
    expect((await grpcError(introspectSelf(s.adminSecret))).code).toBe(Code.ResourceExhausted);
    const viaConnect = await connectError(
      connectClient(TokenService, s.httpUrl, s.adminSecret).introspectToken({ token: s.adminSecret }),
    );
    expect(viaConnect.code).toBe(Code.ResourceExhausted);
    expect(Number(viaConnect.metadata.get('retry-after'))).toBeGreaterThan(0);
    const detail = viaConnect.details[0] as { type: string; value: Uint8Array };
    expect(detail.type).toBe('google.rpc.RetryInfo');
    expect(decodeRetryInfoMs(detail.value)).toBe(Number(viaConnect.metadata.get('retry-after')) * 1000);
    const viaOAuth = await oauth
      .introspectionRequest(as, client, asAdmin, s.adminSecret, opts)
      .then((r) => oauth.processIntrospectionResponse(as, client, r))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(viaOAuth).toBeInstanceOf(oauth.ResponseBodyError);
    const body = viaOAuth as oauth.ResponseBodyError;
    expect(body.status).toBe(429);
    expect(body.error).toBe('temporarily_unavailable');
    expect(body.cause).toMatchObject({ rotor_error: 'rate_limited' });
    expect(Number(body.response.headers.get('retry-after'))).toBeGreaterThan(0);

    // Another peer with a good credential is served.
    const other = await otherPeer.introspectToken(
      { token: s.adminSecret },
      { headers: { authorization: `Bearer ${s.adminSecret}` } },
    );
    expect(other.active).toBe(true);

    // Still refused shortly before Retry-After runs out (5 s of slack for the real clock), served after it.
    s.clock.advance((retryAfter - 5) * 1000);
    expect((await grpcError(introspectSelf(s.adminSecret))).code).toBe(Code.ResourceExhausted);
    s.clock.advance(5000);
    expect((await introspectSelf(s.adminSecret)).active).toBe(true);
    const live = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, asAdmin, s.adminSecret, opts),
    );
    expect(live.active).toBe(true);

    expect(await metric(s, 'rotor_rate_limit_counted_total{limit="failed_auth"}')).toBe(N + 1);
    expect(await metric(s, 'rotor_rate_limit_refused_total{limit="failed_auth"}')).toBe(5);
  });

  it(`counts neither successes, nor refusals of a good credential, nor calls without one on ${engine}`, async () => {
    const api = grpcApi(s);
    try {
      for (let i = 0; i < 2 * N; i++) {
        expect((await introspectSelf(s.adminSecret)).active).toBe(true);
        expect((await failure(api.getToken({ id: 'tok_unknownunknownunknown' }, s.adminSecret))).code).toBe(
          Code.NotFound,
        );
        expect((await failure(api.listTokens({}, undefined as unknown as string))).code).toBe(Code.Unauthenticated);
      }
      for (let i = 0; i < N; i++) {
        expect((await grpcError(introspectSelf(BAD_BEARER))).code).toBe(Code.Unauthenticated);
      }
      const refused = await grpcError(introspectSelf(BAD_BEARER));
      expect(refused.code).toBe(Code.ResourceExhausted);
      s.clock.advance(Number(refused.metadata.get('retry-after')[0]) * 1000);
      expect((await introspectSelf(s.adminSecret)).active).toBe(true);
    } finally {
      api.close();
    }
  });

  it(`limits tokens minted per owner and rotations per family on ${engine}`, async () => {
    const api = grpcApi(s);
    try {
      const create = (ownerId: string) =>
        api.createToken(
          {
            kind: TokenKind.PROJECT,
            ownerId,
            name: 'n',
            scopes: ['rotor:rotate'],
            expiresAt: inMs(s.clock.now(), 86_400_000),
          },
          s.adminSecret,
        );
      const first = await create('web');
      await create('web');
      issuedSecrets.add(first.secret);
      const third = await failure(create('web'));
      expect(third.code).toBe(Code.ResourceExhausted);
      expect(third.rawMessage).toMatch(/^too many tokens minted for this owner; retry after \d+ s$/);
      expect(Number(third.meta('retry-after'))).toBeGreaterThan(0);
      issuedSecrets.add((await create('other-owner')).secret);

      let secret = first.secret;
      for (let i = 0; i < 2; i++) {
        const r = await api.rotateToken({ idempotencyKey: newKey() }, secret);
        issuedSecrets.add(r.secret);
        secret = r.secret;
      }
      const over = await failure(api.rotateToken({ idempotencyKey: newKey() }, secret));
      expect(over.code).toBe(Code.ResourceExhausted);
      expect(over.rawMessage).toMatch(/^too many rotations of this family; retry after \d+ s$/);
      // Nothing was rotated: the head still works, and rotates once the window is over.
      s.clock.advance(Number(over.meta('retry-after')) * 1000);
      const after = await api.rotateToken({ idempotencyKey: newKey() }, secret);
      issuedSecrets.add(after.secret);
      issuedSecrets.add((await create('web')).secret);
      expect(await metric(s, 'rotor_rate_limit_refused_total{limit="mints"}')).toBe(1);
      expect(await metric(s, 'rotor_rate_limit_refused_total{limit="rotations"}')).toBe(1);
    } finally {
      api.close();
    }
  });
});

describeOnPostgres('brakes shared by two rotor serve replicas on postgres', () => {
  let set: ReplicaSet;
  let a: Api;
  let b: Api;

  beforeAll(async () => {
    set = await startReplicas(2, {
      ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: String(N),
      ROTOR_RATE_LIMIT_MINTS_PER_OWNER: '2',
    });
    a = grpcApi(addressOf(set.replicas[0]!));
    b = grpcApi(addressOf(set.replicas[1]!));
  });
  afterAll(async () => {
    a?.close();
    b?.close();
    await set?.stop();
  });

  it('counts failures and mints made through either replica together on postgres', async () => {
    const create = (api: Api) =>
      api.createToken(
        { kind: TokenKind.PROJECT, ownerId: 'web', name: 'n', expiresAt: inMs(Date.now(), 86_400_000) },
        set.adminSecret,
      );
    issuedSecrets.add((await create(a)).secret);
    issuedSecrets.add((await create(b)).secret);
    expect((await failure(create(a))).code).toBe(Code.ResourceExhausted);
    expect((await failure(create(b))).code).toBe(Code.ResourceExhausted);

    const bad = (api: Api) => failure(api.introspectToken({ token: set.adminSecret }, BAD_BEARER));
    expect((await bad(a)).code).toBe(Code.Unauthenticated);
    expect((await bad(b)).code).toBe(Code.Unauthenticated);
    expect((await bad(a)).code).toBe(Code.Unauthenticated);
    // The fourth failure of this peer, wherever it lands, is over the limit of three.
    const fourth = await bad(b);
    expect(fourth.code).toBe(Code.ResourceExhausted);
    expect(fourth.rawMessage).toMatch(LIMITED);
    expect((await bad(a)).code).toBe(Code.ResourceExhausted);
  });
});

describeOnPostgres('brakes whose counter store is cut off fail open on postgres', () => {
  let proxy: TcpProxy;
  let s: TestServer;

  beforeAll(async () => {
    proxy = await startTcpProxy(hostPortOf(TEST_POSTGRES_URL!));
    s = await startTestServer(
      {
        ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: '2',
        ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '1000',
        // The bearer and its introspection stay in the cache while the database is away. Without
        // LISTEN, no late notification (the bootstrap's own event, under load) drops the admin's
        // row from the cache after the first call; the TTL is then the only bound.
        ROTOR_TOKEN_CACHE_TTL_MS: '60000',
        ROTOR_DATABASE_LISTEN: 'off',
      },
      { engine: 'postgres', rewriteDatabaseUrl: proxy.rewrite },
    );
  });
  afterAll(async () => {
    proxy?.restore();
    await s?.stop();
    await proxy?.close();
  });

  it('answers every failure with its own error, serves a healthy call, counts and logs, then limits again on postgres', async () => {
    const tokens = grpcClient(TokenService, s.grpcAddress);
    const introspect = (bearer: string) => tokens.call('introspectToken', { token: s.adminSecret }, { token: bearer });
    try {
      expect((await introspect(s.adminSecret)).active).toBe(true);
      proxy.cut();
      for (let i = 0; i < 5; i++) expect((await grpcError(introspect(BAD_BEARER))).code).toBe(Code.Unauthenticated);
      expect((await introspect(s.adminSecret)).active).toBe(true);
      expect(await metric(s, 'rotor_rate_limit_store_failures_total')).toBe(5);
      expect(s.logs.some((l) => l.includes('rate limit counter unavailable'))).toBe(true);

      proxy.restore();
      await waitFor('the database back', async () => (await fetch(`${s.httpUrl}/healthz`)).status === 200);
      const failuresBefore = await metric(s, 'rotor_rate_limit_store_failures_total');
      let code: Code | undefined;
      for (let i = 0; i < 10 && code !== Code.ResourceExhausted; i++)
        code = (await grpcError(introspect(BAD_BEARER))).code as number as Code;
      expect(code).toBe(Code.ResourceExhausted);
      expect(await metric(s, 'rotor_rate_limit_store_failures_total')).toBe(failuresBefore);
    } finally {
      tokens.close();
    }
  });
});
