/**
 * The rules around JWT access tokens (docs/jwt-access-tokens.md) against a real server: who may
 * obtain one, what revocation and rotation of the source token do to it, who may introspect it,
 * RFC 7009 revocation, forged tokens, and EdDSA keys. grpc-js and Connect share each scenario;
 * every scenario runs on every engine (test/support/engines.ts).
 */
import { Code } from '@connectrpc/connect';
import { SignJWT, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { DPOP_ALGS } from '../../src/domain/dpop-proof.js';
import { connectApi, failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES, withEngines } from '../support/engines.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const DAY = 86_400_000;

describe.each(withEngines(['grpc', 'connect'] as const))('JWT access token rules over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
  });

  async function newToken(scopes = ['read', 'write'], policy: Record<string, bigint> = {}) {
    const res = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc',
        name: 'n',
        scopes,
        expiresAt: inMs(s.clock.now(), DAY),
        policy,
      },
      s.adminSecret,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret };
  }

  async function jwtFor(
    subject: string,
    extra: {
      scope?: string;
      audience?: string[];
      actorToken?: string;
      actorTokenType?: string;
      idempotencyKey?: string;
    } = {},
  ) {
    const r = await api.exchangeToken({
      grantType: GRANT,
      subjectToken: subject,
      subjectTokenType: ACCESS_TOKEN,
      requestedTokenType: JWT,
      ...extra,
    });
    issuedSecrets.add(r.accessToken);
    return r;
  }

  async function rotate(secret: string, key?: string) {
    const r = await api.exchangeToken({
      grantType: GRANT,
      subjectToken: secret,
      subjectTokenType: ACCESS_TOKEN,
      idempotencyKey: key,
    });
    issuedSecrets.add(r.accessToken);
    return r;
  }

  const active = async (jwt: string, bearer = s.adminSecret) =>
    (await api.introspectToken({ token: jwt }, bearer)).active;

  it('needs no particular scope, leaves the subject as it was, and the subject still works', async () => {
    const t = await newToken(['read']);
    const r = await jwtFor(t.secret);
    expect(r).toMatchObject({ issuedTokenType: JWT, tokenType: 'Bearer', scope: 'read', expiresIn: 300n });
    expect(r.tokenId).toMatch(/^jwt_/);
    // docs/jwt-access-tokens.md: the subject's last_used_at is updated (written after the answer).
    await expect.poll(async () => (await api.getToken({ id: t.id }, s.adminSecret)).token?.lastUsedAt).toBeDefined();
    expect((await api.getToken({ id: t.id }, s.adminSecret)).token?.state).toBe(TokenState.ACTIVE);
    expect((await api.introspectToken({ token: t.secret }, t.secret)).active).toBe(true);
    expect((await jwtFor(t.secret)).tokenId).not.toBe(r.tokenId);
    // idempotency_key: validated, but without effect (nothing rotates; a retry gets a new JWT).
    expect(await failure(jwtFor(t.secret, { idempotencyKey: 'short' }))).toMatchObject({ code: Code.InvalidArgument });
    const key = 'jwt-retry-key-0123456789';
    const first = await jwtFor(t.secret, { idempotencyKey: key });
    expect((await jwtFor(t.secret, { idempotencyKey: key })).tokenId).not.toBe(first.tokenId);
    expect((await api.getToken({ id: t.id }, s.adminSecret)).token?.state).toBe(TokenState.ACTIVE);
  });

  it('refuses an unusable subject, an actor_token, rotor:* scopes and audiences the token does not hold', async () => {
    const t = await newToken(['read', 'rotor:rotate']);
    const withAud = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc',
        name: 'aud',
        scopes: ['read'],
        audiences: ['https://api.example'],
        expiresAt: inMs(s.clock.now(), DAY),
      },
      s.adminSecret,
    );
    issuedSecrets.add(withAud.secret);
    expect(await failure(jwtFor(t.secret, { scope: 'rotor:rotate' }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'scopes rotor:* are not issued in JWT access tokens: rotor:rotate',
    });
    expect(await failure(jwtFor(t.secret, { scope: 'admin' }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'requested scopes exceed the scopes held: admin',
    });
    expect(await failure(jwtFor(withAud.secret, { audience: ['https://elsewhere.example'] }))).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'audience not allowed for this token: https://elsewhere.example',
    });
    expect(
      await failure(jwtFor(t.secret, { actorToken: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln', actorTokenType: JWT })),
    ).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'actor_token is not accepted: this token has no workload binding',
    });
    await api.revokeToken({ id: t.id }, s.adminSecret);
    expect(await failure(jwtFor(t.secret))).toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: 'token has been revoked',
    });
  });

  it('takes RFC 8707 resource values as audiences, narrowed like audience', async () => {
    const created = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc',
        name: 'res',
        scopes: ['read'],
        audiences: ['https://a.example/', 'https://b.example/'],
        expiresAt: inMs(s.clock.now(), DAY),
      },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    const r = await api.exchangeToken({
      grantType: GRANT,
      subjectToken: created.secret,
      subjectTokenType: ACCESS_TOKEN,
      requestedTokenType: JWT,
      resource: ['https://b.example/'],
    });
    issuedSecrets.add(r.accessToken);
    expect(decodeJwt(r.accessToken).aud).toBe('https://b.example/');
    const wider = api.exchangeToken({
      grantType: GRANT,
      subjectToken: created.secret,
      subjectTokenType: ACCESS_TOKEN,
      requestedTokenType: JWT,
      resource: ['https://c.example/'],
    });
    expect(await failure(wider)).toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: 'audience not allowed for this token: https://c.example/',
    });
  });

  it('a JWT from a token inside its overlap window never outlives the window', async () => {
    const t = await newToken(['read', 'rotor:rotate'], { overlapSeconds: 60n });
    await rotate(t.secret);
    const r = await jwtFor(t.secret);
    expect(Number(r.expiresIn)).toBeLessThanOrEqual(60);
    expect(Number(r.expiresIn)).toBeGreaterThan(50);
  });

  it('introspects inactive once the source token is revoked, though the signature still verifies until exp', async () => {
    const t = await newToken();
    const r = await jwtFor(t.secret);
    expect(await active(r.accessToken)).toBe(true);
    await api.revokeToken({ id: t.id }, s.adminSecret);
    expect(await active(r.accessToken)).toBe(false);
    const jwks = createRemoteJWKSet(new URL(`${s.httpUrl}/.well-known/jwks.json`));
    await expect(
      jwtVerify(r.accessToken, jwks, { issuer: s.httpUrl, typ: 'at+jwt', currentDate: new Date(s.clock.now()) }),
    ).resolves.toBeDefined();
  });

  it('stays active when the source is rotated; goes inactive when reuse revokes the family', async () => {
    const t = await newToken(['read', 'rotor:rotate']);
    const fromFirst = await jwtFor(t.secret);
    const successor = await rotate(t.secret, newKey());
    const fromSecond = await jwtFor(successor.accessToken);
    expect(await active(fromFirst.accessToken)).toBe(true);
    expect(await active(fromSecond.accessToken)).toBe(true);
    s.clock.advance(11_000); // past the reuse grace: presenting the first token again is reuse
    expect(await failure(rotate(t.secret))).toMatchObject({ code: Code.PermissionDenied });
    expect(await active(fromFirst.accessToken)).toBe(false);
    expect(await active(fromSecond.accessToken)).toBe(false);
  });

  it('goes inactive when the token the source was rotated into is revoked, or when the rotated source itself is revoked', async () => {
    const t = await newToken(['read', 'rotor:rotate'], { overlapSeconds: 3600n });
    const fromFirst = await jwtFor(t.secret);
    const second = await rotate(t.secret);
    const fromSecond = await jwtFor(second.accessToken);
    await api.revokeToken({ id: second.tokenId }, s.adminSecret);
    expect(await active(fromFirst.accessToken)).toBe(false);
    expect(await active(fromSecond.accessToken)).toBe(false);

    const u = await newToken(['read', 'rotor:rotate'], { overlapSeconds: 3600n });
    const fromU = await jwtFor(u.secret);
    const uNext = await rotate(u.secret);
    const fromUNext = await jwtFor(uNext.accessToken);
    expect(await active(fromU.accessToken)).toBe(true);
    await api.revokeToken({ id: u.id }, s.adminSecret); // ends u's overlap; u stays ROTATED
    expect(await active(fromU.accessToken)).toBe(false);
    expect(await active(fromUNext.accessToken)).toBe(true);
  });

  it('lets the source token introspect its own JWTs; other tokens need rotor:introspect', async () => {
    const t = await newToken();
    const sibling = await newToken();
    const r = await jwtFor(t.secret);
    const own = await api.introspectToken({ token: r.accessToken }, t.secret);
    expect(own).toMatchObject({
      active: true,
      tokenId: t.id,
      familyId: t.familyId,
      sub: 'svc',
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'svc',
      scope: 'read write',
      tokenType: 'Bearer',
    });
    expect([own.iss, own.jti, own.clientId]).toEqual([s.httpUrl, r.tokenId, t.id]);
    // A Rotor access token leaves the JWT-only fields empty.
    const plain = await api.introspectToken({ token: t.secret }, t.secret);
    expect([plain.active, plain.iss, plain.jti, plain.clientId]).toEqual([true, '', '', '']);
    expect(own.aud).toEqual([s.httpUrl]);
    expect(await failure(api.introspectToken({ token: r.accessToken }, sibling.secret))).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: 'introspecting another token needs the rotor:introspect scope',
    });
    expect(
      await failure(api.introspectToken({ token: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' }, sibling.secret)),
    ).toMatchObject({ code: Code.PermissionDenied });
  });

  it('reports forged, tampered and foreign-signed JWTs inactive', async () => {
    const t = await newToken();
    const r = await jwtFor(t.secret);
    const [h, p, sig] = r.accessToken.split('.');
    const claims = decodeJwt(r.accessToken);
    const widened = Buffer.from(JSON.stringify({ ...claims, scope: 'read write admin' })).toString('base64url');
    expect(await active(`${h}.${widened}.${sig}`)).toBe(false);
    // Signed by another key that claims Rotor's kid.
    const { privateKey } = await generateKeyPair('ES256');
    const kid = decodeProtectedHeader(r.accessToken).kid!;
    const forged = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid })
      .sign(privateKey);
    expect(await active(forged)).toBe(false);
    const unknownKid = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'not-a-rotor-kid' })
      .sign(privateKey);
    expect(await active(unknownKid)).toBe(false);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid })).toString('base64url')}.${p}.`;
    expect(await active(none)).toBe(false);
    // Rotor's own current key: only a JWT with typ at+jwt and Rotor's issuer is an access token.
    const own = await s.rotor.app.jwt.keyRing.signingKey(s.clock.now());
    const signOwn = (header: Record<string, string>, body: Record<string, unknown>) =>
      new SignJWT({ ...claims, ...body })
        .setProtectedHeader({ alg: own.meta.alg, kid: own.meta.kid, typ: 'at+jwt', ...header })
        .sign(own.privateKey);
    expect(await active(await signOwn({ typ: 'JWT' }, {}))).toBe(false);
    expect(await active(await signOwn({}, { iss: 'https://evil.example' }))).toBe(false);
    expect(await active(await signOwn({}, { exp: Math.floor(s.clock.now() / 1000) - 1 }))).toBe(false);
    // Without its source token a JWT cannot be checked for revocation: it fails closed.
    expect(await active(await signOwn({}, { token_id: undefined }))).toBe(false);
    expect(await active(await signOwn({}, { family_id: undefined }))).toBe(false);
    expect(await active(await signOwn({}, {}))).toBe(true);
    expect(await active(r.accessToken)).toBe(true);
  });
});

describe.each(ENGINES)(
  'JWT access tokens over HTTP: RFC 7009 revocation and the published documents on %s',
  (engine) => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer(
        { ROTOR_JWT_SIGNING_ALG: 'EdDSA', ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS: '120' },
        { engine },
      );
    });
    afterAll(async () => s?.stop());

    async function jwtOverHttp(): Promise<{ access_token: string; expires_in: number }> {
      const created = await connectApi(s).createToken(
        { kind: TokenKind.PROJECT, ownerId: 'p', name: 'n', scopes: ['read'], expiresAt: inMs(s.clock.now(), DAY) },
        s.adminSecret,
      );
      issuedSecrets.add(created.secret);
      const res = await fetch(`${s.httpUrl}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: GRANT,
          subject_token: created.secret,
          subject_token_type: ACCESS_TOKEN,
          requested_token_type: JWT,
        }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        access_token: string;
        expires_in: number;
        issued_token_type: string;
        token_type: string;
      };
      issuedSecrets.add(body.access_token);
      expect(body).toMatchObject({ issued_token_type: JWT, token_type: 'Bearer', expires_in: 120 });
      return body;
    }

    it('signs with EdDSA when configured; the JWT verifies against the JWKS', async () => {
      const { access_token } = await jwtOverHttp();
      expect(decodeProtectedHeader(access_token)).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt' });
      const jwks = createRemoteJWKSet(new URL(`${s.httpUrl}/.well-known/jwks.json`));
      const { payload } = await jwtVerify(access_token, jwks, {
        issuer: s.httpUrl,
        audience: s.httpUrl,
        typ: 'at+jwt',
        algorithms: ['EdDSA'],
        currentDate: new Date(s.clock.now()),
      });
      expect(payload.exp! - payload.iat!).toBe(120);
    });

    it('answers /oauth/revoke with a JWT by 400 unsupported_token_type (RFC 7009 §2.2.1); the JWT stays active', async () => {
      const { access_token } = await jwtOverHttp();
      const res = await fetch(`${s.httpUrl}/oauth/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: access_token }),
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as Record<string, string>;
      expect(body).toMatchObject({ error: 'unsupported_token_type', rotor_error: 'revocation_unsupported' });
      expect(body.error_description).toContain('JWT access tokens cannot be revoked; they expire within 120 s');
      const introspected = await fetch(`${s.httpUrl}/oauth/introspect`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${s.adminSecret}` },
        body: new URLSearchParams({ token: access_token }),
      });
      const claims = decodeJwt(access_token);
      expect(await introspected.json()).toEqual({
        active: true,
        scope: 'read',
        exp: claims.exp,
        iat: claims.iat,
        sub: 'p',
        aud: [s.httpUrl],
        token_type: 'Bearer',
        iss: s.httpUrl,
        jti: claims.jti,
        client_id: claims.client_id,
        token_id: claims.token_id,
        family_id: claims.family_id,
        owner_id: 'p',
        kind: 'project',
      });
    });

    it('serves the RFC 8414 metadata and the JWKS as cacheable public documents, GET and HEAD only', async () => {
      const meta = await fetch(`${s.httpUrl}/.well-known/oauth-authorization-server`);
      expect(meta.status).toBe(200);
      expect(meta.headers.get('cache-control')).toBe('public, max-age=300');
      expect(await meta.json()).toEqual({
        issuer: s.httpUrl,
        token_endpoint: `${s.httpUrl}/oauth/token`,
        introspection_endpoint: `${s.httpUrl}/oauth/introspect`,
        revocation_endpoint: `${s.httpUrl}/oauth/revoke`,
        jwks_uri: `${s.httpUrl}/.well-known/jwks.json`,
        grant_types_supported: [GRANT],
        response_types_supported: [],
        token_endpoint_auth_methods_supported: ['none'],
        revocation_endpoint_auth_methods_supported: ['none'],
        token_exchange_subject_token_types_supported: [ACCESS_TOKEN],
        token_exchange_requested_token_types_supported: [ACCESS_TOKEN, JWT],
        dpop_signing_alg_values_supported: [...DPOP_ALGS],
      });
      const jwks = await fetch(`${s.httpUrl}/.well-known/jwks.json`);
      expect(jwks.headers.get('content-type')).toBe('application/jwk-set+json');
      const keys = ((await jwks.json()) as { keys: Record<string, string>[] }).keys;
      expect(keys.length).toBeGreaterThan(0);
      for (const k of keys) expect(Object.keys(k).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x']);
      expect((await fetch(`${s.httpUrl}/.well-known/jwks.json`, { method: 'HEAD' })).status).toBe(200);
      const post = await fetch(`${s.httpUrl}/.well-known/jwks.json`, { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET');
    });
  },
);

describe.each(ENGINES)('an explicit ROTOR_ISSUER with a path on %s', (engine) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_ISSUER: 'https://auth.example/rotor/' }, { engine });
  });
  afterAll(async () => s?.stop());

  it('is the iss of every JWT and the base of every endpoint; metadata is also served at the RFC 8414 §3.1 path', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/oauth-authorization-server/rotor']) {
      const meta = (await (await fetch(`${s.httpUrl}${path}`)).json()) as Record<string, string>;
      expect(meta).toMatchObject({
        issuer: 'https://auth.example/rotor',
        jwks_uri: 'https://auth.example/rotor/.well-known/jwks.json',
        token_endpoint: 'https://auth.example/rotor/oauth/token',
      });
    }
    const created = await connectApi(s).createToken(
      { kind: TokenKind.PROJECT, ownerId: 'p', name: 'n', scopes: ['read'], expiresAt: inMs(s.clock.now(), DAY) },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    const r = await connectApi(s).exchangeToken({
      grantType: GRANT,
      subjectToken: created.secret,
      subjectTokenType: ACCESS_TOKEN,
      requestedTokenType: JWT,
    });
    issuedSecrets.add(r.accessToken);
    expect(decodeJwt(r.accessToken)).toMatchObject({
      iss: 'https://auth.example/rotor',
      aud: 'https://auth.example/rotor',
    });
    expect((await connectApi(s).introspectToken({ token: r.accessToken }, s.adminSecret)).active).toBe(true);
  });
});
