/**
 * Fuzzes the workload JWTs Rotor verifies (src/identity/workload-verifier.ts, docs/workload-identity.md):
 * actor JWTs presented to rotate a token with a workload binding (RotateToken over grpc-js and
 * Connect, and token exchange on POST /oauth/token), and federation JWTs (subject_token_type jwt on
 * POST /oauth/token and ExchangeToken over grpc-js). The JWTs are valid ones of a loopback test
 * issuer (test/support/jwt-issuer.ts) with random header and claim mutations, signed again by the
 * issuer's key (so the checks behind the signature are reached) or not (a broken signature),
 * structural mutations of the compact form (segments dropped, added, swapped, characters changed),
 * and garbage. Every refusal is a 4xx with an RFC 6749 error code, or a gRPC / Connect code that
 * src/api/connect-errors.ts produces (never INTERNAL, UNKNOWN or UNAVAILABLE: the issuer is up), a
 * refused call writes no token and no event, the bound token stays active, and the server still
 * serves. No JWT reaches the log or the database (every signed one is checked by the test server's
 * leak scan at stop).
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { b64json, gitlabClaims, startTestIssuer, type TestIssuer } from '../support/jwt-issuer.js';
import { connectApi, grpcApi, RpcFailure, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';
import { anyText } from './arbitraries.js';
import { DOCUMENTED_CODES, expectServing, fuzzParams, rowCounts } from './support.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const OAUTH_ERRORS = ['invalid_request', 'invalid_grant', 'invalid_scope', 'invalid_target', 'unsupported_token_type'];

/** A JSON value a claim or header parameter may be replaced with. */
const jsonValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: anyText },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      0,
      -1,
      1.5,
      2 ** 31,
      2 ** 53,
      1e308,
      -1e308,
      Number.MAX_SAFE_INTEGER,
      '',
      'none',
      'NONE',
      'ES256',
      'HS256',
      'RS256',
      'at+jwt',
      'JWT',
      'rotor',
      ['rotor'],
      ['rotor', 'other'],
      [],
      {},
      null,
      true,
      'project_path:group/app:ref_type:branch:ref:main',
      'project_path:group/app:*',
      '42',
    ),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

/** What happens to one claim or header parameter. */
type Edit = { op: 'keep' } | { op: 'delete' } | { op: 'set'; value: unknown } | { op: 'shift'; seconds: number };

const CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'namespace_id', 'ref_protected', 'project_path'];
const TIME_CLAIMS = new Set(['exp', 'iat', 'nbf']);
const HEADERS = ['alg', 'kid', 'typ', 'jku', 'x5u', 'jwk', 'crit', 'cty', 'b64', 'zip'];

/** `keep` weighs so that a JWT gets one or two edits on average, and many reach the checks behind the first. */
function edit(name: string, keep: number): fc.Arbitrary<Edit> {
  return fc.oneof(
    { weight: keep, arbitrary: fc.constant<Edit>({ op: 'keep' }) },
    { weight: 1, arbitrary: fc.constant<Edit>({ op: 'delete' }) },
    { weight: 2, arbitrary: jsonValue.map((value): Edit => ({ op: 'set', value })) },
    ...(TIME_CLAIMS.has(name)
      ? [
          {
            weight: 2,
            arbitrary: fc
              .oneof(fc.integer({ min: -100_000, max: 100_000 }), fc.constantFrom(-3601, -61, -1, 0, 1, 61, 3601))
              .map((seconds): Edit => ({ op: 'shift', seconds })),
          },
        ]
      : []),
  );
}

function applyEdits(base: Record<string, unknown>, edits: Record<string, Edit>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, e] of Object.entries(edits)) {
    if (e.op === 'delete') delete out[k];
    else if (e.op === 'set') out[k] = e.value;
    else if (e.op === 'shift') out[k] = (typeof out[k] === 'number' ? out[k] : 0) + e.seconds;
  }
  return out;
}

const claimEdits = fc.record(
  Object.fromEntries(CLAIMS.map((c) => [c, edit(c, 40)])) as Record<string, fc.Arbitrary<Edit>>,
);
const headerEdits = fc.record(
  Object.fromEntries(HEADERS.map((h) => [h, edit(h, 80)])) as Record<string, fc.Arbitrary<Edit>>,
);
const extraClaims = fc.oneof(
  { weight: 3, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.dictionary(anyText, jsonValue, { maxKeys: 3 }) },
);

/** A recipe for one JWT; built against the issuer and the server's clock when the property runs. */
type Recipe =
  | {
      kind: 'signed';
      header: Record<string, Edit>;
      claims: Record<string, Edit>;
      extra: Record<string, unknown>;
      /** Signed by the issuer after the edits (true), or the edits applied to a signed JWT (false). */
      resign: boolean;
    }
  | { kind: 'structure'; op: number; at: number; text: string }
  | { kind: 'garbage'; text: string };

const recipe: fc.Arbitrary<Recipe> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('signed' as const),
      header: headerEdits,
      claims: claimEdits,
      extra: extraClaims,
      resign: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('structure' as const),
      op: fc.integer({ min: 0, max: 7 }),
      at: fc.nat(),
      text: anyText,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('garbage' as const),
      text: fc.oneof(
        anyText,
        fc
          .array(fc.oneof(fc.base64String({ maxLength: 40 }), anyText), { minLength: 1, maxLength: 5 })
          .map((parts) => parts.join('.')),
      ),
    }),
  },
);

/** Structural mutations of a signed JWT's compact form. */
function restructure(jwt: string, op: number, at: number, text: string): string {
  const parts = jwt.split('.');
  const i = at % parts.length;
  switch (op) {
    case 0:
      return parts.filter((_, j) => j !== i).join('.');
    case 1:
      return [...parts.slice(0, i), text, ...parts.slice(i)].join('.');
    case 2:
      return [parts[1], parts[0], parts[2]].join('.');
    case 3:
      return `${jwt.slice(0, at % jwt.length)}${text}${jwt.slice(at % jwt.length)}`;
    case 4: {
      const c = at % jwt.length;
      return `${jwt.slice(0, c)}${jwt[c] === 'A' ? 'B' : 'A'}${jwt.slice(c + 1)}`;
    }
    case 5:
      return `${jwt}=`;
    case 6:
      return ` ${jwt}\n`;
    default:
      return jwt.slice(0, at % jwt.length);
  }
}

describe('fuzz: actor and federation JWTs on sqlite', () => {
  let issuer: TestIssuer;
  let s: TestServer;
  let grpc: Api;
  let connect: Api;
  /** The bound token the actor JWTs are presented for (replaced by its successor when one rotates it). */
  let bound: { id: string; secret: string };

  beforeAll(async () => {
    issuer = await startTestIssuer({ typ: 'at+jwt' });
    const trust = writeTrustConfig({
      issuers: [
        {
          issuer: issuer.issuer,
          jwks_uri: issuer.jwksUri,
          audiences: ['rotor'],
          algorithms: ['ES256'],
          typ: 'at+jwt',
          max_token_age_seconds: 3600,
        },
      ],
      federation: [
        {
          issuer: issuer.issuer,
          subject: 'project_path:group/app:*',
          audience: 'rotor',
          claims: { namespace_id: '42' },
          service_account: 'sa-fuzz',
          scopes: ['read'],
          max_lifetime_seconds: 600,
        },
      ],
    });
    s = await startTestServer({ ROTOR_TRUST_CONFIG: trust });
    grpc = grpcApi(s);
    connect = connectApi(s);
    const res = await grpc.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc-fuzz',
        name: 'bound',
        scopes: ['rotor:rotate', 'deploy'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
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
    bound = { id: res.token!.id, secret: res.secret };
  });
  afterAll(async () => {
    grpc?.close();
    await s?.stop();
    await issuer?.close();
  });

  /** The JWT a recipe describes, with claims dated by the server's clock. */
  function build(r: Recipe): string {
    if (r.kind === 'garbage') return r.text;
    const now = Math.floor(s.clock.now() / 1000);
    const claims = { ...gitlabClaims(issuer.issuer), iat: now, nbf: now - 5, exp: now + 300, jti: randomUUID() };
    const header = { alg: 'ES256', kid: issuer.kid, typ: 'at+jwt' };
    if (r.kind === 'structure') return restructure(issuer.signRaw(header, claims), r.op, r.at, r.text);
    const h = applyEdits(header, r.header);
    const c = { ...r.extra, ...applyEdits(claims, r.claims) };
    if (r.resign) return issuer.signRaw(h, c);
    const [, , signature] = issuer.signRaw(header, claims).split('.');
    return `${b64json(h)}.${b64json(c)}.${signature}`;
  }

  /** Refusal messages seen (the JWT's field name and details stripped), to show which checks the runs reached. */
  const reasons = new Map<string, number>();
  function note(message: unknown): void {
    const reason = String(message)
      .replace(/^(actor|subject)_token /, '')
      .replace(/: .*/, '');
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }

  /** A refusal over gRPC or Connect: a documented code, never INTERNAL, UNKNOWN or UNAVAILABLE. */
  function expectRpcRefusal(e: unknown): void {
    if (!(e instanceof RpcFailure)) throw e;
    expect(DOCUMENTED_CODES, `${Code[e.code]} ${e.rawMessage}`).toContain(e.code);
    note(e.rawMessage);
  }

  async function oauthToken(
    params: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${s.httpUrl}/oauth/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: GRANT, ...params }),
    });
    const body = (await res.json()) as Record<string, unknown>;
    if (typeof body.access_token === 'string') issuedSecrets.add(body.access_token);
    return { status: res.status, body };
  }

  it('actor JWTs for a bound token: refused with a 4xx or a documented code, nothing written', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(recipe, fc.constantFrom('grpc', 'connect', 'oauth'), async (r, via) => {
        const jwt = build(r);
        const before = await rowCounts(s);
        let successor: string | undefined;
        if (via === 'oauth') {
          const res = await oauthToken({
            subject_token: bound.secret,
            subject_token_type: ACCESS_TOKEN,
            actor_token: jwt,
            actor_token_type: JWT_TYPE,
          });
          if (res.status === 200) successor = res.body.access_token as string;
          else {
            expect([400, 401, 403], JSON.stringify(res.body)).toContain(res.status);
            expect(OAUTH_ERRORS, JSON.stringify(res.body)).toContain(res.body.error);
            note(res.body.error_description);
          }
        } else {
          try {
            const res = await (via === 'grpc' ? grpc : connect).rotateToken(
              { actorToken: jwt, actorTokenType: JWT_TYPE },
              bound.secret,
            );
            successor = res.secret;
            issuedSecrets.add(res.secret);
          } catch (e) {
            expectRpcRefusal(e);
          }
        }
        if (successor !== undefined) {
          // A mutation the rules accept (an unchecked claim or header changed): the bound token rotated.
          accepted++;
          const info = await grpc.introspectToken({ token: successor }, s.adminSecret);
          expect(info.active).toBe(true);
          bound = { id: info.tokenId, secret: successor };
          return;
        }
        expect(await rowCounts(s)).toEqual(before);
        expect((await grpc.getToken({ id: bound.id }, s.adminSecret)).token!.state).toBe(TokenState.ACTIVE);
      }),
      fuzzParams(150),
    );
    console.log(`actor JWT fuzz: ${accepted} mutations accepted`);
    await expectServing(s);
    // A valid actor JWT still rotates the bound token.
    const ok = await grpc.rotateToken(
      { actorToken: await issuer.sign(s.clock.now()), actorTokenType: JWT_TYPE },
      bound.secret,
    );
    issuedSecrets.add(ok.secret);
  });

  it('federation JWTs: refused with a 4xx or a documented code, nothing written', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(recipe, fc.constantFrom('grpc', 'oauth'), async (r, via) => {
        const jwt = build(r);
        const before = await rowCounts(s);
        if (via === 'oauth') {
          const res = await oauthToken({ subject_token: jwt, subject_token_type: JWT_TYPE });
          if (res.status === 200) {
            accepted++;
            return;
          }
          expect([400, 401, 403], JSON.stringify(res.body)).toContain(res.status);
          expect(OAUTH_ERRORS, JSON.stringify(res.body)).toContain(res.body.error);
          note(res.body.error_description);
        } else {
          try {
            const res = await grpc.exchangeToken({ grantType: GRANT, subjectToken: jwt, subjectTokenType: JWT_TYPE });
            issuedSecrets.add(res.accessToken);
            accepted++;
            return;
          } catch (e) {
            expectRpcRefusal(e);
          }
        }
        expect(await rowCounts(s)).toEqual(before);
      }),
      fuzzParams(150),
    );
    console.log(`federation JWT fuzz: ${accepted} mutations accepted`);
    await expectServing(s);
    const ok = await oauthToken({ subject_token: await issuer.sign(s.clock.now()), subject_token_type: JWT_TYPE });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
  });

  it('the runs reached the checks behind the signature', () => {
    console.log('workload JWT fuzz refusals:', Object.fromEntries([...reasons].sort()));
    expect([...reasons.keys()]).toEqual(
      expect.arrayContaining([
        'is not a signed JWT (JWS compact serialization)',
        'has an invalid signature',
        'is not for an accepted audience (aud)',
        'is from an issuer that is not trusted',
        'is not valid yet (nbf)',
        "does not match the token's workload binding",
        'matches no federation rule',
      ]),
    );
  });
});
