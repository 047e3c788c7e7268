/**
 * Workload identity end to end (docs/workload-identity.md): a real Rotor trusting loopback jose issuers.
 * - Every bad workload JWT is `invalid_request` on POST /oauth/token and
 *   UNAUTHENTICATED or PERMISSION_DENIED over gRPC, and the bound token stays active.
 * - An issuer whose JWKS endpoint is down or hangs gives 503
 *   `temporarily_unavailable` / UNAVAILABLE within the fetch timeout.
 * - Federation scope, audience and lifetime limits.
 * The issuers start once per file; Rotor runs on every engine (test/support/engines.ts) against
 * them, one engine after the other (each server has its own JWKS cache and jti replay table).
 */
import { randomBytes } from 'node:crypto';
import { generateKeyPair } from 'jose';
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { hs256WithKey, startTestIssuer, unsecuredJwt, type TestIssuer } from '../support/jwt-issuer.js';
import { failure, grpcApi, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES } from '../support/engines.js';
import { beforeTimer } from '../support/timer-race.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const SUB = 'project_path:group/app:ref_type:branch:ref:main';

describe('workload identity over /oauth/token and gRPC', () => {
  /** Requires typ at+jwt; bound tokens and the first federation rules name it. */
  let ci: TestIssuer;
  /** Trusted, but no binding names it. */
  let other: TestIssuer;
  /** Trusted through an explicit jwks_uri with a short fetch timeout; made to fail. */
  let flaky: TestIssuer;
  /** ROTOR_TRUST_CONFIG naming the three issuers, shared by the server of each engine. */
  let trust: string;

  beforeAll(async () => {
    ci = await startTestIssuer({ typ: 'at+jwt' });
    other = await startTestIssuer();
    flaky = await startTestIssuer();
    trust = writeTrustConfig({
      issuers: [
        {
          issuer: ci.issuer,
          discovery: true,
          audiences: ['rotor'],
          algorithms: ['ES256'],
          typ: 'at+jwt',
          max_token_age_seconds: 3600,
        },
        { issuer: other.issuer, jwks_uri: other.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] },
        {
          issuer: flaky.issuer,
          jwks_uri: flaky.jwksUri,
          audiences: ['rotor'],
          algorithms: ['ES256'],
          fetch_timeout_ms: 500,
        },
      ],
      federation: [
        {
          issuer: ci.issuer,
          subject: 'project_path:group/app:*',
          audience: 'rotor',
          claims: { namespace_id: '42', ref_protected: 'true' },
          service_account: 'sa-deployer',
          scopes: ['deploy', 'read'],
          max_lifetime_seconds: 3600,
          token_audiences: ['https://deploy.example'],
        },
        {
          issuer: ci.issuer,
          subject: 'project_path:group/long:*',
          audience: 'rotor',
          service_account: 'sa-long',
          scopes: ['read'],
          max_lifetime_seconds: 600,
          cap_to_token_expiry: false,
        },
        {
          issuer: flaky.issuer,
          subject: '*:main',
          audience: 'rotor',
          service_account: 'sa-flaky',
          scopes: ['read'],
          max_lifetime_seconds: 600,
        },
      ],
    });
  });
  afterAll(async () => {
    await Promise.all([ci?.close(), other?.close(), flaky?.close()]);
  });
  afterEach(() => {
    flaky.mode = 'ok';
  });

  describe.each(ENGINES)('on %s', (engine) => {
    let s: TestServer;
    let grpc: Api;

    beforeAll(async () => {
      s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
      grpc = grpcApi(s);
    });
    afterAll(async () => {
      grpc?.close();
      await s?.stop();
    });

    const now = () => s.clock.now();
    const sec = () => Math.floor(now() / 1000);

    async function boundToken(issuer: TestIssuer = ci) {
      const res = await grpc.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc-deployer',
          name: 'deployer',
          scopes: ['rotor:rotate', 'deploy'],
          expiresAt: inMs(now(), 86_400_000),
          policy: {
            workloadBinding: {
              issuer: issuer.issuer,
              subject: 'project_path:group/app:*',
              audience: 'rotor',
              claims: { namespace_id: '42' },
            },
          },
        },
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      return { id: res.token!.id, secret: res.secret };
    }

    async function post(params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
      const res = await fetch(`${s.httpUrl}/oauth/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: GRANT, ...params }),
      });
      const body = (await res.json()) as Record<string, unknown>;
      if (typeof body.access_token === 'string') issuedSecrets.add(body.access_token);
      return { status: res.status, body };
    }

    async function stateOf(id: string) {
      return (await grpc.getToken({ id }, s.adminSecret)).token!.state;
    }

    // -------------------------------------------------------------------------------------------
    describe('bad actor JWTs for a bound token', () => {
      let bound: { id: string; secret: string };
      beforeAll(async () => {
        bound = await boundToken();
      });

      const cases: [string, () => Promise<string>, 'unauthenticated' | 'denied', string][] = [
        [
          'alg none',
          async () => unsecuredJwt({ iss: ci.issuer, sub: SUB, aud: 'rotor', iat: sec(), exp: sec() + 60, jti: 'n1' }),
          'unauthenticated',
          'actor_token is unsigned (alg none is not accepted)',
        ],
        [
          'HS256 signed with the issuer public key',
          async () =>
            hs256WithKey(
              { kid: ci.kid, typ: 'at+jwt' },
              { iss: ci.issuer, sub: SUB, aud: 'rotor', iat: sec(), exp: sec() + 60, jti: 'h1', namespace_id: '42' },
              await ci.publicPem(),
            ),
          'unauthenticated',
          "actor_token is signed with HS256, which this issuer's algorithms do not allow",
        ],
        [
          'an algorithm outside the allow-list',
          () => ci.sign(now(), {}, { rsa: true }),
          'unauthenticated',
          "actor_token is signed with RS256, which this issuer's algorithms do not allow",
        ],
        [
          'wrong iss (claims another trusted issuer, signed by this one)',
          () => ci.sign(now(), { iss: other.issuer }, { typ: 'JWT' }),
          'unauthenticated',
          'actor_token names a key (kid) the issuer does not publish',
        ],
        [
          'wrong iss (a trusted issuer the binding does not name)',
          () => other.sign(now()),
          'denied',
          "actor_token does not match the token's workload binding: issuer",
        ],
        [
          'wrong aud',
          () => ci.sign(now(), { aud: 'not-rotor' }),
          'unauthenticated',
          'actor_token is not for an accepted audience (aud)',
        ],
        ['expired', () => ci.sign(now(), { exp: sec() - 61 }), 'unauthenticated', 'actor_token has expired (exp)'],
        [
          'nbf in the future',
          () => ci.sign(now(), { nbf: sec() + 120 }),
          'unauthenticated',
          'actor_token is not valid yet (nbf)',
        ],
        [
          'iat too old',
          () => ci.sign(now(), { iat: sec() - 3600 - 120 }),
          'unauthenticated',
          'actor_token is too old or issued in the future (iat)',
        ],
        [
          'subject not matching the binding',
          () => ci.sign(now(), { sub: 'project_path:group/other:ref_type:branch:ref:main' }),
          'denied',
          "actor_token does not match the token's workload binding: subject",
        ],
        [
          'claim not matching the binding',
          () => ci.sign(now(), { namespace_id: '41' }),
          'denied',
          "actor_token does not match the token's workload binding: claim namespace_id",
        ],
        [
          'untrusted issuer',
          () => ci.sign(now(), { iss: 'https://gitlab.evil.example' }),
          'unauthenticated',
          'actor_token is from an issuer that is not trusted',
        ],
        [
          'jku header pointing elsewhere',
          async () => {
            const { privateKey } = await generateKeyPair('ES256');
            return ci.sign(
              now(),
              {},
              { foreignKey: { key: privateKey, kid: 'attacker' }, header: { jku: 'http://127.0.0.1:1/attacker-jwks' } },
            );
          },
          'unauthenticated',
          'actor_token carries a jku header: keys come only from the trust configuration',
        ],
        [
          'an ID token (typ JWT) where at+jwt is required',
          () => ci.sign(now(), {}, { typ: 'JWT' }),
          'unauthenticated',
          "actor_token has the wrong type (typ header): this issuer's tokens are accepted only with the configured typ",
        ],
      ];

      for (const [name, make, kind, message] of cases) {
        it(`${name}: HTTP 400 invalid_request, gRPC ${kind === 'denied' ? 'PERMISSION_DENIED' : 'UNAUTHENTICATED'}`, async () => {
          const http = await post({
            subject_token: bound.secret,
            subject_token_type: ACCESS_TOKEN,
            actor_token: await make(),
            actor_token_type: JWT_TYPE,
          });
          expect(http.status).toBe(400);
          expect(http.body).toMatchObject({ error: 'invalid_request', error_description: message });
          const f = await failure(
            grpc.exchangeToken({
              grantType: GRANT,
              subjectToken: bound.secret,
              subjectTokenType: ACCESS_TOKEN,
              actorToken: await make(),
              actorTokenType: JWT_TYPE,
            }),
          );
          expect(f.code).toBe(kind === 'denied' ? Code.PermissionDenied : Code.Unauthenticated);
          expect(f.rawMessage).toBe(message);
          const r = await failure(
            grpc.rotateToken({ actorToken: await make(), actorTokenType: JWT_TYPE }, bound.secret),
          );
          expect([r.code, r.rawMessage]).toEqual([f.code, message]);
          expect(await stateOf(bound.id)).toBe(TokenState.ACTIVE);
        });
      }

      it('replayed jti: HTTP 400 invalid_request, gRPC UNAUTHENTICATED', async () => {
        const jwt = await ci.sign(now());
        const first = await boundToken();
        const ok = await post({
          subject_token: first.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
        });
        expect(ok.status).toBe(200);
        const message = 'actor_token has been used before (jti replay): request a fresh JWT';
        const http = await post({
          subject_token: bound.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
        });
        expect([http.status, http.body.error, http.body.error_description]).toEqual([400, 'invalid_request', message]);
        const f = await failure(grpc.rotateToken({ actorToken: jwt, actorTokenType: JWT_TYPE }, bound.secret));
        expect([f.code, f.rawMessage]).toEqual([Code.Unauthenticated, message]);
        expect(await stateOf(bound.id)).toBe(TokenState.ACTIVE);
      });

      it('a retry with the same idempotency key may resend the JWT; the same key on another token may not', async () => {
        const jwt = await ci.sign(now());
        const key = `retry-${Date.now()}-abcdefghij`;
        const a = await boundToken();
        const b = await boundToken();
        const first = await post({
          subject_token: a.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
          idempotency_key: key,
        });
        expect(first.status).toBe(200);
        // The retry of that rotation (lost response): same token, key and JWT → the same successor.
        const retry = await post({
          subject_token: a.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
          idempotency_key: key,
        });
        expect([retry.status, retry.body.token_id, retry.body.access_token]).toEqual([
          200,
          first.body.token_id,
          first.body.access_token,
        ]);
        // The spent JWT and the same key on another token bound to the same workload: a replay.
        const other = await post({
          subject_token: b.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
          idempotency_key: key,
        });
        expect([other.status, other.body.error, other.body.error_description]).toEqual([
          400,
          'invalid_request',
          'actor_token has been used before (jti replay): request a fresh JWT',
        ]);
        expect(await stateOf(b.id)).toBe(TokenState.ACTIVE);
      });

      it('no JWT or claim value reaches the log or the event log', async () => {
        const jwt = await ci.sign(now());
        const t = await boundToken();
        const ok = await post({
          subject_token: t.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: jwt,
          actor_token_type: JWT_TYPE,
        });
        expect(ok.status).toBe(200);
        const logs = s.logs.join('');
        expect(logs).not.toContain(jwt.split('.')[2]!);
        const rows = await s.rotor.store.knex('token_events').select('*');
        expect(JSON.stringify(rows)).not.toContain(jwt.split('.')[1]!);
        const jtis = await s.rotor.store.knex('workload_jtis').select('*');
        expect(jtis.length).toBeGreaterThan(0);
        expect(JSON.stringify(jtis)).not.toContain(
          (JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti,
        );
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('an issuer whose JWKS endpoint is down or slow', () => {
      it('down: 503 temporarily_unavailable and UNAVAILABLE, the token untouched', async () => {
        const t = await boundToken(flaky);
        flaky.mode = 'down';
        const message = `keys of issuer ${flaky.issuer} are unavailable: the JWKS endpoint answered HTTP 500; retry later`;
        const http = await post({
          subject_token: t.secret,
          subject_token_type: ACCESS_TOKEN,
          actor_token: await flaky.sign(now()),
          actor_token_type: JWT_TYPE,
        });
        expect(http.status).toBe(503);
        expect(http.body).toMatchObject({ error: 'temporarily_unavailable', error_description: message });
        const f = await failure(
          grpc.rotateToken({ actorToken: await flaky.sign(now()), actorTokenType: JWT_TYPE }, t.secret),
        );
        expect([f.code, f.rawMessage]).toEqual([Code.Unavailable, message]);
        expect(await stateOf(t.id)).toBe(TokenState.ACTIVE);
        // Federation through the same issuer answers the same way.
        const fed = await post({ subject_token: await flaky.sign(now()), subject_token_type: JWT_TYPE });
        expect([fed.status, fed.body.error]).toEqual([503, 'temporarily_unavailable']);
      });

      it('an unknown kid: 20 concurrent exchanges make one JWKS refetch; another new kid inside the cooldown makes none', async () => {
        await post({ subject_token: await ci.sign(now()), subject_token_type: JWT_TYPE }); // keys cached
        s.clock.advance(31_000); // past the cooldown of the last fetch
        await ci.rotateKey();
        const before = ci.jwksFetches;
        const jwts = await Promise.all(Array.from({ length: 20 }, () => ci.sign(now())));
        const answers = await Promise.all(
          jwts.map((jwt) => post({ subject_token: jwt, subject_token_type: JWT_TYPE })),
        );
        expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
        expect(ci.jwksFetches - before).toBe(1);

        await ci.rotateKey();
        const refused = await Promise.all(
          Array.from({ length: 5 }, async () =>
            post({ subject_token: await ci.sign(now()), subject_token_type: JWT_TYPE }),
          ),
        );
        for (const r of refused)
          expect([r.status, r.body.error_description]).toEqual([
            400,
            'subject_token names a key (kid) the issuer does not publish',
          ]);
        expect(ci.jwksFetches - before).toBe(1);
        s.clock.advance(31_000); // later tests sign with the newest key: let it be fetched
      });

      it('slow: UNAVAILABLE within the 500 ms fetch timeout, never a hang', async () => {
        s.clock.advance(31_000); // past the cooldown of the failure above
        const t = await boundToken(flaky);
        flaky.mode = 'slow';
        const actorToken = await flaky.sign(now());
        const started = Date.now();
        // Never a hang: the answer comes before a 4 s timer on the same event loop (the server runs
        // in this process, so CPU load delays the timer as much as the fetch timeout); the exact
        // timeout is checked in test/identity/workload-verifier.test.ts.
        const f = await beforeTimer(
          failure(
            grpc.exchangeToken({
              grantType: GRANT,
              subjectToken: t.secret,
              subjectTokenType: ACCESS_TOKEN,
              actorToken,
              actorTokenType: JWT_TYPE,
            }),
          ),
          4000,
        );
        expect(f.code).toBe(Code.Unavailable);
        expect(f.rawMessage).toBe(
          `keys of issuer ${flaky.issuer} are unavailable: the JWKS endpoint did not answer within 500 ms; retry later`,
        );
        expect(Date.now() - started).toBeGreaterThanOrEqual(450);
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('a JWT access token for a bound token carries the workload as act', () => {
      const jwtRequest = (subject: string, extra: Record<string, string> = {}) =>
        post({ subject_token: subject, subject_token_type: ACCESS_TOKEN, requested_token_type: JWT_TYPE, ...extra });

      it('with the workload JWT as actor_token: act = its iss/sub, shown by introspection; the token is not rotated', async () => {
        const t = await boundToken();
        const res = await jwtRequest(t.secret, { actor_token: await ci.sign(now()), actor_token_type: JWT_TYPE });
        expect([res.status, res.body.issued_token_type]).toEqual([200, JWT_TYPE]);
        const claims = JSON.parse(
          Buffer.from((res.body.access_token as string).split('.')[1]!, 'base64url').toString(),
        ) as Record<string, unknown>;
        expect(claims).toMatchObject({ sub: 'svc-deployer', client_id: t.id, act: { iss: ci.issuer, sub: SUB } });
        const introspected = await fetch(`${s.httpUrl}/oauth/introspect`, {
          method: 'POST',
          headers: { authorization: `Bearer ${s.adminSecret}` },
          body: new URLSearchParams({ token: res.body.access_token as string }),
        });
        expect(await introspected.json()).toMatchObject({ active: true, act: { iss: ci.issuer, sub: SUB } });
        expect(await stateOf(t.id)).toBe(TokenState.ACTIVE);
        // Without an actor_token: a JWT without act (the binding guards rotation, not JWTs).
        const plain = await jwtRequest(t.secret);
        expect(plain.status).toBe(200);
        expect(
          JSON.parse(Buffer.from((plain.body.access_token as string).split('.')[1]!, 'base64url').toString()),
        ).not.toHaveProperty('act');
      });

      it('RotateToken checks the actor_token fields as the exchange does (docs/bad-input.md)', async () => {
        const t = await boundToken();
        const noType = await failure(grpc.rotateToken({ actorToken: await ci.sign(now()) }, t.secret));
        expect([noType.code, noType.rawMessage]).toEqual([
          Code.InvalidArgument,
          'actor_token_type is required when actor_token is present',
        ]);
        const noToken = await failure(grpc.rotateToken({ actorTokenType: JWT_TYPE }, t.secret));
        expect([noToken.code, noToken.rawMessage]).toEqual([
          Code.InvalidArgument,
          'actor_token_type must not be sent without actor_token',
        ]);
        const long = await failure(
          grpc.rotateToken({ actorToken: 'a'.repeat(8193), actorTokenType: JWT_TYPE }, t.secret),
        );
        expect([long.code, long.rawMessage]).toEqual([Code.InvalidArgument, 'actor_token is too long']);
        expect(await stateOf(t.id)).toBe(TokenState.ACTIVE);
      });

      it('a token without a binding refuses the actor_token before verifying it: its jti is not spent', async () => {
        const plain = await grpc.createToken(
          {
            kind: TokenKind.SERVICE_ACCOUNT,
            ownerId: 'svc-deployer',
            name: 'plain',
            scopes: ['deploy'],
            expiresAt: inMs(now(), 86_400_000),
          },
          s.adminSecret,
        );
        issuedSecrets.add(plain.secret);
        const actor = await ci.sign(now());
        const refused = await jwtRequest(plain.secret, { actor_token: actor, actor_token_type: JWT_TYPE });
        expect([refused.status, refused.body.error, refused.body.error_description]).toEqual([
          400,
          'invalid_request',
          'actor_token is not accepted: this token has no workload binding',
        ]);
        const t = await boundToken();
        expect((await jwtRequest(t.secret, { actor_token: actor, actor_token_type: JWT_TYPE })).status).toBe(200);
      });

      it('RotateToken of a token without a binding refuses the actor_token before verifying it: its jti is not spent, its issuer not asked', async () => {
        const plain = await grpc.createToken(
          {
            kind: TokenKind.SERVICE_ACCOUNT,
            ownerId: 'svc-deployer',
            name: 'plain',
            scopes: ['deploy', 'rotor:rotate'],
            expiresAt: inMs(now(), 86_400_000),
          },
          s.adminSecret,
        );
        issuedSecrets.add(plain.secret);
        const actor = await ci.sign(now());
        const fetchesBefore = ci.jwksFetches;
        const refused = await failure(grpc.rotateToken({ actorToken: actor, actorTokenType: JWT_TYPE }, plain.secret));
        expect([refused.code, refused.rawMessage]).toEqual([
          Code.InvalidArgument,
          'actor_token is not accepted: this token has no workload binding',
        ]);
        expect(ci.jwksFetches).toBe(fetchesBefore);
        expect(await stateOf(plain.token!.id)).toBe(TokenState.ACTIVE);
        // The same JWT still proves a bound token's rotation: it was not spent on the refusal.
        const t = await boundToken();
        const rotated = await grpc.rotateToken({ actorToken: actor, actorTokenType: JWT_TYPE }, t.secret);
        issuedSecrets.add(rotated.secret);
        expect(await stateOf(t.id)).toBe(TokenState.ROTATED);
      });

      it('a workload that does not match the binding, or a bad JWT, is refused as for rotation', async () => {
        const t = await boundToken();
        const mismatch = await jwtRequest(t.secret, {
          actor_token: await ci.sign(now(), { namespace_id: '41' }),
          actor_token_type: JWT_TYPE,
        });
        expect([mismatch.status, mismatch.body.error, mismatch.body.error_description]).toEqual([
          400,
          'invalid_request',
          "actor_token does not match the token's workload binding: claim namespace_id",
        ]);
        const g = await failure(
          grpc.exchangeToken({
            grantType: GRANT,
            subjectToken: t.secret,
            subjectTokenType: ACCESS_TOKEN,
            requestedTokenType: JWT_TYPE,
            actorToken: await ci.sign(now(), { aud: 'x' }),
            actorTokenType: JWT_TYPE,
          }),
        );
        expect([g.code, g.rawMessage]).toEqual([
          Code.Unauthenticated,
          'actor_token is not for an accepted audience (aud)',
        ]);
      });
    });

    // -------------------------------------------------------------------------------------------
    describe('federation (subject_token_type jwt)', () => {
      it('a matching JWT gets a fresh service-account token, no longer-lived than the JWT', async () => {
        const jwt = await ci.sign(now(), { exp: sec() + 300 });
        const res = await post({ subject_token: jwt, subject_token_type: JWT_TYPE });
        expect(res.status).toBe(200);
        expect(res.body).toMatchObject({ issued_token_type: ACCESS_TOKEN, token_type: 'Bearer', scope: 'deploy read' });
        expect(res.body.expires_in).toBeGreaterThan(290);
        expect(res.body.expires_in).toBeLessThanOrEqual(300);
        expect(res.body.access_token).toMatch(/^rtr_sa_/);
        const info = await grpc.introspectToken({ token: res.body.access_token as string }, s.adminSecret);
        expect(info).toMatchObject({
          active: true,
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'sa-deployer',
          scope: 'deploy read',
        });
        const created = await s.rotor.store.events.list({ tokenId: res.body.token_id as string }, 10);
        expect(created.map((e) => [e.type, e.actor, e.act])).toEqual([
          ['created', 'federation', { iss: ci.issuer, sub: SUB }],
        ]);
        // The same JWT cannot be used twice.
        const again = await post({ subject_token: jwt, subject_token_type: JWT_TYPE });
        expect([again.status, again.body.error, again.body.error_description]).toEqual([
          400,
          'invalid_request',
          'subject_token has been used before (jti replay): request a fresh JWT',
        ]);
      });

      it('narrows scope and audience; beyond the rule is invalid_scope / invalid_target (INVALID_ARGUMENT on gRPC)', async () => {
        const narrowed = await post({
          subject_token: await ci.sign(now()),
          subject_token_type: JWT_TYPE,
          scope: 'read',
          audience: 'https://deploy.example',
        });
        expect(narrowed.status).toBe(200);
        expect(narrowed.body.scope).toBe('read');
        const info = await grpc.introspectToken({ token: narrowed.body.access_token as string }, s.adminSecret);
        expect(info.aud).toEqual(['https://deploy.example']);

        const scope = await post({
          subject_token: await ci.sign(now()),
          subject_token_type: JWT_TYPE,
          scope: 'read admin',
        });
        expect([scope.status, scope.body.error, scope.body.error_description]).toEqual([
          400,
          'invalid_scope',
          "requested scopes exceed the federation rule's scopes: admin",
        ]);
        const target = await post({
          subject_token: await ci.sign(now()),
          subject_token_type: JWT_TYPE,
          resource: 'https://elsewhere.example/',
        });
        expect([target.status, target.body.error, target.body.error_description]).toEqual([
          400,
          'invalid_target',
          'audience not allowed by the federation rule: https://elsewhere.example/',
        ]);
        const g = await failure(
          grpc.exchangeToken({
            grantType: GRANT,
            subjectToken: await ci.sign(now()),
            subjectTokenType: JWT_TYPE,
            scope: 'write',
          }),
        );
        expect([g.code, g.rawMessage]).toEqual([
          Code.InvalidArgument,
          "requested scopes exceed the federation rule's scopes: write",
        ]);
      });

      it("lifetime: the rule's maximum when it does not cap to the JWT", async () => {
        const res = await post({
          subject_token: await ci.sign(now(), {
            sub: 'project_path:group/long:ref_type:branch:ref:main',
            exp: sec() + 120,
          }),
          subject_token_type: JWT_TYPE,
        });
        expect(res.status).toBe(200);
        expect(res.body.expires_in).toBeGreaterThan(590);
        expect(res.body.expires_in).toBeLessThanOrEqual(600);
      });

      it('a JWT no rule matches: invalid_request / PERMISSION_DENIED; a bad one: UNAUTHENTICATED', async () => {
        const unmatched = await post({
          subject_token: await ci.sign(now(), { ref_protected: 'false' }),
          subject_token_type: JWT_TYPE,
        });
        expect([unmatched.status, unmatched.body.error, unmatched.body.error_description]).toEqual([
          400,
          'invalid_request',
          'subject_token matches no federation rule',
        ]);
        const g = await failure(
          grpc.exchangeToken({ grantType: GRANT, subjectToken: await other.sign(now()), subjectTokenType: JWT_TYPE }),
        );
        expect([g.code, g.rawMessage]).toEqual([Code.PermissionDenied, 'subject_token matches no federation rule']);
        const bad = await failure(
          grpc.exchangeToken({
            grantType: GRANT,
            subjectToken: await ci.sign(now(), { aud: 'x' }),
            subjectTokenType: JWT_TYPE,
          }),
        );
        expect([bad.code, bad.rawMessage]).toEqual([
          Code.Unauthenticated,
          'subject_token is not for an accepted audience (aud)',
        ]);
      });

      it('RFC 8414 metadata names the jwt subject token type once federation rules exist', async () => {
        const meta = (await (await fetch(`${s.httpUrl}/.well-known/oauth-authorization-server`)).json()) as Record<
          string,
          unknown
        >;
        expect(meta.token_exchange_subject_token_types_supported).toEqual([ACCESS_TOKEN, JWT_TYPE]);
        expect(meta.token_exchange_requested_token_types_supported).toEqual([ACCESS_TOKEN, JWT_TYPE]);
      });

      it('refuses requested_token_type jwt with a jwt subject before spending the JWT, which then federates', async () => {
        const jwt = await ci.sign(now());
        const message = `requested_token_type jwt needs subject_token_type ${ACCESS_TOKEN}; federate first, then exchange the issued token for a JWT`;
        const http = await post({ subject_token: jwt, subject_token_type: JWT_TYPE, requested_token_type: JWT_TYPE });
        expect([http.status, http.body.error, http.body.rotor_error, http.body.error_description]).toEqual([
          400,
          'invalid_request',
          'unsupported_token_type',
          message,
        ]);
        const g = await failure(
          grpc.exchangeToken({
            grantType: GRANT,
            subjectToken: jwt,
            subjectTokenType: JWT_TYPE,
            requestedTokenType: JWT_TYPE,
          }),
        );
        expect([g.code, g.rawMessage]).toEqual([Code.InvalidArgument, message]);
        // Federate first, then exchange the issued token for a JWT.
        const federated = await post({ subject_token: jwt, subject_token_type: JWT_TYPE });
        expect(federated.status).toBe(200);
        const asJwt = await post({
          subject_token: federated.body.access_token as string,
          subject_token_type: ACCESS_TOKEN,
          requested_token_type: JWT_TYPE,
        });
        expect([asJwt.status, asJwt.body.issued_token_type]).toEqual([200, JWT_TYPE]);
        issuedSecrets.add(asJwt.body.access_token as string);
      });

      it('refuses an actor_token or an idempotency_key with a jwt subject', async () => {
        const actor = await post({
          subject_token: await ci.sign(now()),
          subject_token_type: JWT_TYPE,
          actor_token: await ci.sign(now()),
          actor_token_type: JWT_TYPE,
        });
        expect([actor.status, actor.body.error_description]).toEqual([
          400,
          'actor_token is not accepted with a jwt subject_token',
        ]);
        const key = await post({
          subject_token: await ci.sign(now()),
          subject_token_type: JWT_TYPE,
          idempotency_key: randomBytes(24).toString('base64url'),
        });
        expect([key.status, key.body.error_description]).toEqual([
          400,
          'idempotency_key applies to rotation only; a federation JWT is used once',
        ]);
      });
    });
  });
});
