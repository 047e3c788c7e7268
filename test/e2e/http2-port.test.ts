/**
 * HTTP/2 on the HTTP port beside HTTP/1.1 (README: "Interfaces"): in plain text h2c with prior
 * knowledge, with TLS h2 through ALPN. Connect and gRPC clients over HTTP/2 make a unary call and
 * follow a WatchExpiry stream; HTTP/1.1 clients (fetch, oauth4webapi, node:https) keep working on
 * the same port; a shutdown ends an open HTTP/2 stream with UNAVAILABLE.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { type Client, createClient, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ExpiryEvent, ExpiryEventType, ExpiryService } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { ROOT } from '../support/process.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

const FIXTURES = `${ROOT}test/fixtures/tls`;
const TLS_ENV = { ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem`, ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` };
const CA = readFileSync(`${FIXTURES}/ca.pem`);
issuedSecrets.add(readFileSync(TLS_ENV.ROTOR_TLS_KEY_FILE, 'utf8').split('\n')[1]!);

/** A unary CreateToken, then a WatchExpiry stream that sees the token's SNAPSHOT and its REVOKED. */
async function unaryAndStream(s: TestServer, transport: Transport, owner: string): Promise<void> {
  const headers = { authorization: `Bearer ${s.adminSecret}` };
  const tokens: Client<typeof TokenService> = createClient(TokenService, transport);
  const created = await tokens.createToken(
    {
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: owner,
      name: 'h2',
      scopes: ['rotor:rotate'],
      expiresAt: inMs(s.clock.now(), 86_400_000),
    },
    { headers },
  );
  issuedSecrets.add(created.secret);
  expect(created.token!.ownerId).toBe(owner);
  const abort = new AbortController();
  const events: ExpiryEvent[] = [];
  const done = (async () => {
    const expiry = createClient(ExpiryService, transport);
    for await (const e of expiry.watchExpiry(
      { ownerId: owner, afterSequence: 0n },
      { headers, signal: abort.signal },
    )) {
      events.push(e);
      if (events.length === 2) return;
    }
  })();
  try {
    await waitForWatchers(s, 1);
    await tokens.revokeToken({ id: created.token!.id }, { headers });
    await done;
  } finally {
    abort.abort();
  }
  expect(events.map((e) => [e.type, e.tokenId])).toEqual([
    [ExpiryEventType.SNAPSHOT, created.token!.id],
    [ExpiryEventType.REVOKED, created.token!.id],
  ]);
}

/** GET over HTTPS/1.1, trusting only the test CA. */
function httpsGet(url: string): Promise<{ status: number; version: string; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { ca: CA }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.httpVersion, body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('HTTP/2 in plain text (h2c) beside HTTP/1.1', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({});
  });
  afterAll(async () => s?.stop());

  it('Connect over HTTP/2: a unary call and a WatchExpiry stream', async () => {
    await unaryAndStream(s, createConnectTransport({ baseUrl: s.httpUrl, httpVersion: '2' }), 'h2c-connect');
  });

  it('gRPC over HTTP/2 on the HTTP port: a unary call and a WatchExpiry stream', async () => {
    await unaryAndStream(s, createGrpcTransport({ baseUrl: s.httpUrl }), 'h2c-grpc');
  });

  it('HTTP/1.1 on the same port: fetch, oauth4webapi discovery, Connect over HTTP/1.1', async () => {
    const health = await fetch(`${s.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    const issuer = new URL(s.httpUrl);
    const as = await oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true }),
    );
    expect(as.token_endpoint).toBe(`${s.httpUrl}/oauth/token`);
    const tokens = createClient(TokenService, createConnectTransport({ baseUrl: s.httpUrl, httpVersion: '1.1' }));
    const self = await tokens.introspectToken(
      { token: s.adminSecret },
      { headers: { authorization: `Bearer ${s.adminSecret}` } },
    );
    expect(self.active).toBe(true);
  });
});

describe('HTTP/2 with TLS (h2 through ALPN) beside HTTPS/1.1', () => {
  let s: TestServer;
  let https: string;
  beforeAll(async () => {
    s = await startTestServer(TLS_ENV);
    https = `https://localhost:${s.rotor.httpPort}`;
  });
  afterAll(async () => s?.stop());

  it('Connect over h2: a unary call and a WatchExpiry stream', async () => {
    const transport = createConnectTransport({ baseUrl: https, httpVersion: '2', nodeOptions: { ca: CA } });
    await unaryAndStream(s, transport, 'h2-connect');
  });

  it('gRPC over h2 on the HTTP port: a unary call and a WatchExpiry stream', async () => {
    await unaryAndStream(s, createGrpcTransport({ baseUrl: https, nodeOptions: { ca: CA } }), 'h2-grpc');
  });

  it('HTTPS/1.1 on the same port: /healthz and the OAuth metadata', async () => {
    const health = await httpsGet(`${https}/healthz`);
    expect([health.status, health.version]).toEqual([200, '1.1']);
    const meta = await httpsGet(`${https}/.well-known/oauth-authorization-server`);
    expect(meta.status).toBe(200);
    expect((JSON.parse(meta.body) as { issuer: string }).issuer).toBe(`https://127.0.0.1:${s.rotor.httpPort}`);
  });
});

describe.each([
  ['h2c', {}],
  ['h2 with TLS', TLS_ENV],
] as const)('shutdown with an open HTTP/2 stream (%s)', (_name, env) => {
  // The test's own timeout is the check: the session must be drained (GOAWAY, then cut) within the grace.
  it('ends the stream with UNAVAILABLE and closes', async () => {
    const s = await startTestServer(env);
    const tls = 'ROTOR_TLS_CERT_FILE' in env;
    const baseUrl = tls ? `https://localhost:${s.rotor.httpPort}` : s.httpUrl;
    const expiry = createClient(
      ExpiryService,
      createConnectTransport({ baseUrl, httpVersion: '2', ...(tls ? { nodeOptions: { ca: CA } } : {}) }),
    );
    const outcome = (async () => {
      try {
        const headers = { authorization: `Bearer ${s.adminSecret}` };
        for await (const _ of expiry.watchExpiry({ ownerId: 'admin' }, { headers })) void _;
        return 'ended ok';
      } catch (e) {
        return String((e as { code?: unknown }).code);
      }
    })();
    await waitForWatchers(s, 1);
    await s.stop(200);
    expect(await outcome).toBe(String(14)); // Code.Unavailable
  }, 8_000);
});
