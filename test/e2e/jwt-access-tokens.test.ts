/**
 * A JWT access token issued by Rotor verifies with jose against the published JWKS, and still
 * does after the signing key rotates; introspection reports it correctly. Run over grpc-js (gRPC port), the Connect client and POST /oauth/token with
 * oauth4webapi, each against its own real server whose clock the test moves, on every engine
 * (test/support/engines.ts): on PostgreSQL the signing keys live in its signing_keys table.
 */
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { connectApi, failure, grpcApi, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES, withEngines } from '../support/engines.js';
import { Code } from '@connectrpc/connect';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The test servers rotate keys daily: the next key is published 6 h (a quarter) ahead. */
const ROTATION_MS = DAY;
const TTL_S = 300;
const API = 'https://api.example';

/** One exchange answer and one introspection answer, whichever transport carried them. */
interface Exchanged {
  accessToken: string;
  issuedTokenType: string;
  tokenType: string;
  expiresIn: number;
  scope: string;
  tokenId: string;
}
interface Introspected {
  active: boolean;
  scope?: string;
  exp?: number;
  iat?: number;
  sub?: string;
  aud?: string[];
  tokenId?: string;
  familyId?: string;
  tokenType?: string;
}
interface Transport {
  exchange(params: Record<string, string>): Promise<Exchanged>;
  introspect(token: string, bearer: string): Promise<Introspected>;
  close(): void;
}

const client: oauth.Client = { client_id: 'rotor-jwt-e2e' };
const insecure = { [oauth.allowInsecureRequests]: true } as const;

/** RFC 8414 discovery with oauth4webapi: the metadata the OAuth transport and the verifiers use. */
async function discover(s: TestServer): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(s.httpUrl);
  return oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  );
}

function rpcTransport(api: Api): Transport {
  return {
    async exchange(p) {
      const r = await api.exchangeToken({
        grantType: GRANT,
        subjectToken: p.subject_token!,
        subjectTokenType: p.subject_token_type!,
        requestedTokenType: p.requested_token_type ?? '',
        scope: p.scope ?? '',
        audience: p.audience === undefined ? [] : [p.audience],
      });
      return {
        accessToken: r.accessToken,
        issuedTokenType: r.issuedTokenType,
        tokenType: r.tokenType,
        expiresIn: Number(r.expiresIn),
        scope: r.scope,
        tokenId: r.tokenId,
      };
    },
    async introspect(token, bearer) {
      const r = await api.introspectToken({ token }, bearer);
      if (!r.active) return { active: false };
      return {
        active: true,
        scope: r.scope,
        exp: Number(r.exp),
        iat: Number(r.iat),
        sub: r.sub,
        aud: r.aud,
        tokenId: r.tokenId,
        familyId: r.familyId,
        tokenType: r.tokenType,
      };
    },
    close: () => api.close(),
  };
}

function oauthTransport(as: oauth.AuthorizationServer): Transport {
  return {
    async exchange(p) {
      const r = await oauth.processGenericTokenEndpointResponse(
        as,
        client,
        await oauth.genericTokenEndpointRequest(as, client, oauth.None(), GRANT, p, insecure),
      );
      return {
        accessToken: r.access_token,
        issuedTokenType: String(r.issued_token_type),
        tokenType: r.token_type,
        expiresIn: r.expires_in ?? -1,
        scope: r.scope ?? '',
        tokenId: String(r.token_id),
      };
    },
    async introspect(token, bearer) {
      const auth: oauth.ClientAuth = (_as, _client, _body, headers) =>
        void headers.set('authorization', `Bearer ${bearer}`);
      const r = await oauth.processIntrospectionResponse(
        as,
        client,
        await oauth.introspectionRequest(as, client, auth, token, insecure),
      );
      if (!r.active) return { active: false };
      return {
        active: true,
        scope: r.scope,
        exp: r.exp,
        iat: r.iat,
        sub: r.sub,
        aud: r.aud as string[],
        tokenId: r.token_id as string,
        familyId: r.family_id as string,
        tokenType: r.token_type,
      };
    },
    close() {},
  };
}

const WIRES = ['grpc', 'connect', 'oauth'] as const;

describe.each(withEngines(WIRES))('JWT access tokens over %s on %s', (wire, engine) => {
  let s: TestServer;
  let as: oauth.AuthorizationServer;
  let t: Transport;

  beforeAll(async () => {
    s = await startTestServer({ ROTOR_JWT_KEY_ROTATION_SECONDS: String(ROTATION_MS / 1000) }, { engine });
    as = await discover(s);
    t =
      wire === 'grpc'
        ? rpcTransport(grpcApi(s))
        : wire === 'connect'
          ? rpcTransport(connectApi(s))
          : oauthTransport(as);
  });
  afterAll(async () => {
    t?.close();
    await s?.stop();
  });

  async function newToken(lifetimeMs = 30 * DAY) {
    const api = connectApi(s);
    const res = await api.createToken(
      {
        kind: TokenKind.PROJECT,
        ownerId: 'web',
        name: 'deploy',
        scopes: ['rotor:rotate', 'read', 'write'],
        audiences: [API, 'https://other.example'],
        expiresAt: inMs(s.clock.now(), lifetimeMs),
      },
      s.adminSecret,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret };
  }

  async function jwtFor(
    subject: string,
    extra: Record<string, string> = { scope: 'read', audience: API },
  ): Promise<Exchanged> {
    const r = await t.exchange({
      subject_token: subject,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: JWT,
      ...extra,
    });
    issuedSecrets.add(r.accessToken);
    return r;
  }

  async function publishedKids(): Promise<string[]> {
    const res = await fetch(as.jwks_uri!);
    expect(res.headers.get('content-type')).toBe('application/jwk-set+json');
    const body = (await res.json()) as { keys: { kid: string; alg: string; use: string; d?: unknown }[] };
    for (const k of body.keys) {
      expect(k).toMatchObject({ alg: 'ES256', use: 'sig' });
      expect(k.d).toBeUndefined();
    }
    return body.keys.map((k) => k.kid);
  }

  const verifyOptions = () => ({
    issuer: as.issuer,
    audience: API,
    typ: 'at+jwt',
    currentDate: new Date(s.clock.now()),
  });

  it('issues a JWT that verifies against the live JWKS before and after the signing key rotates, and drops the old key once its tokens expired', async () => {
    const subject = await newToken();
    // jose's refetch cooldown runs on the real clock; the server's clock is moved by the test.
    const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), { cooldownDuration: 0 });

    // 1. A JWT for the token's identity; the subject is not rotated.
    const first = await jwtFor(subject.secret);
    expect(first).toMatchObject({ issuedTokenType: JWT, scope: 'read', expiresIn: TTL_S });
    expect(first.tokenType.toLowerCase()).toBe('bearer');
    const header1 = decodeProtectedHeader(first.accessToken);
    expect(header1).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    const { payload } = await jwtVerify(first.accessToken, jwks, verifyOptions());
    expect(payload).toMatchObject({
      iss: as.issuer,
      sub: 'web',
      aud: API,
      scope: 'read',
      client_id: subject.id,
      token_id: subject.id,
      family_id: subject.familyId,
      jti: first.tokenId,
    });
    expect(payload.exp! - payload.iat!).toBe(TTL_S);
    expect((await connectApi(s).getToken({ id: subject.id }, s.adminSecret)).token?.state).toBe(TokenState.ACTIVE);
    expect(await publishedKids()).toEqual([header1.kid]);
    expect(await t.introspect(first.accessToken, s.adminSecret)).toEqual({
      active: true,
      scope: 'read',
      exp: payload.exp,
      iat: payload.iat,
      sub: 'web',
      aud: [API],
      tokenId: subject.id,
      familyId: subject.familyId,
      tokenType: 'Bearer',
    });

    // 2. An hour before the key retires its successor is already published, not yet signing.
    s.clock.advance(ROTATION_MS - HOUR);
    const kid1 = header1.kid!;
    expect(decodeProtectedHeader((await jwtFor(subject.secret)).accessToken).kid).toBe(kid1);
    const kids = await publishedKids();
    expect(kids).toHaveLength(2);
    expect(kids).toContain(kid1);

    // 3. A JWT a minute before the rotation, one after it: the new key signs the second; both
    //    verify against the same JWKS and introspect as active.
    s.clock.advance(HOUR - 60_000);
    const beforeRotation = await jwtFor(subject.secret);
    expect(decodeProtectedHeader(beforeRotation.accessToken).kid).toBe(kid1);
    s.clock.advance(61_000);
    const afterRotation = await jwtFor(subject.secret);
    const kid2 = decodeProtectedHeader(afterRotation.accessToken).kid!;
    expect(kid2).not.toBe(kid1);
    expect(kids).toContain(kid2);
    const old = await jwtVerify(beforeRotation.accessToken, jwks, verifyOptions());
    const fresh = await jwtVerify(afterRotation.accessToken, jwks, verifyOptions());
    expect(old.protectedHeader.kid).toBe(kid1);
    expect(fresh.protectedHeader.kid).toBe(kid2);
    expect(await t.introspect(beforeRotation.accessToken, s.adminSecret)).toMatchObject({
      active: true,
      tokenId: subject.id,
      exp: old.payload.exp,
    });
    expect(await t.introspect(afterRotation.accessToken, s.adminSecret)).toMatchObject({
      active: true,
      tokenId: subject.id,
      exp: fresh.payload.exp,
    });
    expect(await publishedKids()).toEqual([kid2, kid1]);

    // 4. Once every token the old key signed has expired, the old key leaves the JWKS; the new
    //    key goes on signing, and what it signed verifies against a fresh JWKS fetch.
    s.clock.advance(TTL_S * 1000);
    expect(await publishedKids()).toEqual([kid2]);
    expect(await t.introspect(beforeRotation.accessToken, s.adminSecret)).toEqual({ active: false });
    expect(await t.introspect(afterRotation.accessToken, s.adminSecret)).toEqual({ active: false });
    const refreshed = createRemoteJWKSet(new URL(as.jwks_uri!));
    const whileValid = { ...verifyOptions(), currentDate: new Date((old.payload.exp! - 10) * 1000) };
    await expect(jwtVerify(beforeRotation.accessToken, refreshed, whileValid)).rejects.toBeInstanceOf(
      joseErrors.JWKSNoMatchingKey,
    );
    const latest = await jwtFor(subject.secret);
    const verified = await jwtVerify(latest.accessToken, refreshed, verifyOptions());
    expect(verified.protectedHeader.kid).toBe(kid2);
    expect(verified.payload.jti).toBe(latest.tokenId);
    expect(await t.introspect(latest.accessToken, s.adminSecret)).toMatchObject({ active: true, tokenId: subject.id });
  });

  it('scopes and audiences narrow only; rotor:* scopes stay out; the lifetime never passes the subject expiry', async () => {
    const subject = await newToken(120_000);
    const all = await jwtFor(subject.secret, {});
    const claims = (
      await jwtVerify(all.accessToken, createRemoteJWKSet(new URL(as.jwks_uri!)), {
        ...verifyOptions(),
        audience: 'https://other.example',
      })
    ).payload as JWTPayload & { scope: string };
    expect(claims.scope).toBe('read write');
    expect(claims.aud).toEqual([API, 'https://other.example']);
    expect(all.expiresIn).toBeLessThanOrEqual(120);
    expect(all.expiresIn).toBeGreaterThan(100);
    expect(claims.exp).toBeLessThanOrEqual(Math.floor((s.clock.now() + 120_000) / 1000));
  });
});

describe.each(ENGINES)(
  'JWT access tokens with oauth4webapi as the resource server (RFC 9068 validation) on %s',
  (engine) => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer({}, { engine });
    });
    afterAll(async () => s?.stop());

    it('validateJwtAccessToken accepts a Rotor JWT for its audience and refuses it for another', async () => {
      const as = await discover(s);
      expect(as).toMatchObject({
        issuer: s.httpUrl,
        token_endpoint: `${s.httpUrl}/oauth/token`,
        introspection_endpoint: `${s.httpUrl}/oauth/introspect`,
        revocation_endpoint: `${s.httpUrl}/oauth/revoke`,
        jwks_uri: `${s.httpUrl}/.well-known/jwks.json`,
        grant_types_supported: [GRANT],
        token_exchange_requested_token_types_supported: [ACCESS_TOKEN, JWT],
      });
      const created = await connectApi(s).createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc',
          name: 'n',
          scopes: ['read'],
          audiences: [API],
          expiresAt: inMs(s.clock.now(), DAY),
        },
        s.adminSecret,
      );
      issuedSecrets.add(created.secret);
      const r = await oauth.processGenericTokenEndpointResponse(
        as,
        client,
        await oauth.genericTokenEndpointRequest(
          as,
          client,
          oauth.None(),
          GRANT,
          { subject_token: created.secret, subject_token_type: ACCESS_TOKEN, requested_token_type: JWT },
          insecure,
        ),
      );
      issuedSecrets.add(r.access_token);
      const request = new Request(`${API}/resource`, { headers: { authorization: `Bearer ${r.access_token}` } });
      const claims = await oauth.validateJwtAccessToken(as, request, API, insecure);
      expect(claims).toMatchObject({
        iss: s.httpUrl,
        sub: 'svc',
        aud: API,
        client_id: created.token!.id,
        scope: 'read',
      });
      await expect(
        oauth.validateJwtAccessToken(as, request.clone(), 'https://elsewhere.example', insecure),
      ).rejects.toThrow(/aud/);
    });
  },
);

describe.each(ENGINES)('a JWT that would pass the 8192-character limit on %s', (engine) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { engine });
  });
  afterAll(async () => s?.stop());

  it('is refused (INVALID_ARGUMENT / 400 invalid_request) with the documented message; a narrower request gets one', async () => {
    // 64 scopes of 100 characters and 16 audiences of 200: about 10 000 characters of claims.
    const scopes = Array.from({ length: 64 }, (_, i) => `scope-${String(i).padStart(2, '0')}-${'s'.repeat(91)}`);
    const audiences = Array.from(
      { length: 16 },
      (_, i) => `https://aud-${String(i).padStart(2, '0')}.example/${'a'.repeat(172)}`,
    );
    const api = connectApi(s);
    const created = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'big',
        name: 'n',
        scopes,
        audiences,
        expiresAt: inMs(s.clock.now(), DAY),
      },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    const message = 'the JWT would be longer than 8192 characters; request fewer scopes or audiences';

    const rpc = await failure(
      api.exchangeToken({
        grantType: GRANT,
        subjectToken: created.secret,
        subjectTokenType: ACCESS_TOKEN,
        requestedTokenType: JWT,
      }),
    );
    expect([rpc.code, rpc.rawMessage]).toEqual([Code.InvalidArgument, message]);

    const form = new URLSearchParams({
      grant_type: GRANT,
      subject_token: created.secret,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: JWT,
    });
    const http = await fetch(`${s.httpUrl}/oauth/token`, { method: 'POST', body: form });
    expect(http.status).toBe(400);
    expect(await http.json()).toMatchObject({ error: 'invalid_request', error_description: message });

    // Fewer scopes and one audience fit.
    const narrow = await api.exchangeToken({
      grantType: GRANT,
      subjectToken: created.secret,
      subjectTokenType: ACCESS_TOKEN,
      requestedTokenType: JWT,
      scope: scopes.slice(0, 4).join(' '),
      audience: [audiences[0]!],
    });
    issuedSecrets.add(narrow.accessToken);
    expect(narrow.accessToken.length).toBeLessThanOrEqual(8192);
    expect(narrow.scope).toBe(scopes.slice(0, 4).join(' '));
    api.close();
  });
});
