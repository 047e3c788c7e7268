/**
 * DPoP-bound token families (docs/dpop.md) over the gRPC port (grpc-js) and the HTTP port (the
 * Connect client), with proofs made by jose: binding at creation and by upgrade, the proof-first
 * rule, one test per bad proof, nonces, the thief who holds a rotated token but not the key, and
 * introspection of the thumbprint.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { withEngines } from '../support/engines.js';
import { dpopClient, type CallHeaders, type DpopClient } from '../support/dpop-client.js';
import { dpopProof, forgedProof, newDpopKey, type DpopKey } from '../support/dpop.js';
import { connectApi, failure, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';

const DAY = 86_400_000;
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

/** A token as the tests hold it. */
interface Held {
  id: string;
  familyId: string;
  secret: string;
}

/** Creates a token (bound to `jkt` when given) as the bootstrap admin. */
async function createToken(s: TestServer, jkt: string | undefined, reuseGraceSeconds?: bigint): Promise<Held> {
  const r = await connectApi(s).createToken(
    {
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'svc',
      name: 'dpop',
      scopes: ['read', 'rotor:rotate'],
      expiresAt: inMs(s.clock.now(), DAY),
      policy: {
        ...(jkt !== undefined && { dpopJkt: jkt }),
        ...(reuseGraceSeconds !== undefined && { reuseGraceSeconds }),
      },
    },
    s.adminSecret,
  );
  issuedSecrets.add(r.secret);
  return { id: r.token!.id, familyId: r.token!.familyId, secret: r.secret };
}

/** The token's state and successor, as the admin sees them. */
async function stateOf(s: TestServer, id: string): Promise<{ state: TokenState; successorId: string }> {
  const t = (await connectApi(s).getToken({ id }, s.adminSecret)).token!;
  return { state: t.state, successorId: t.successorId };
}

/** Server clock in whole seconds: proofs are judged by it. */
const iatOf = (s: TestServer) => Math.floor(s.clock.now() / 1000);

describe.each(withEngines<Wire>(['grpc', 'connect']))('DPoP-bound tokens over %s on %s', (wire, engine) => {
  let s: TestServer;
  let c: DpopClient;
  let key: DpopKey;
  let other: DpopKey;
  /** A bound token no test may change: every bad proof is tried against it. */
  let target: Held;

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    c = dpopClient(wire, s);
    [key, other] = await Promise.all([newDpopKey(), newDpopKey()]);
    target = await createToken(s, key.jkt);
  });
  afterAll(async () => {
    c?.close();
    await s?.stop();
  });

  /** A valid proof for a call authenticated by `secret`. */
  const proofFor = (rpc: 'RotateToken' | 'IntrospectToken', secret: string, k = key) =>
    dpopProof(k, { htu: c.url(rpc), accessToken: secret, iat: iatOf(s) });

  async function rotate(headers: CallHeaders): Promise<Record<string, unknown>> {
    const r = await c.call('RotateToken', {}, headers);
    issuedSecrets.add(r.secret as string);
    return r;
  }

  it(`rotates a bound token with a jose-made proof; the successor stays bound and says DPoP over ${wire} on ${engine}`, async () => {
    const t0 = await createToken(s, key.jkt);
    const r = await rotate({ authorization: `DPoP ${t0.secret}`, dpop: await proofFor('RotateToken', t0.secret) });
    expect(r.tokenType).toBe('DPoP');
    const t1 = r.token as { id: string; policy: { dpopJkt: string } };
    expect(t1.policy.dpopJkt).toBe(key.jkt);
    const secret1 = r.secret as string;
    // The successor is used (introspecting itself) with a proof naming it.
    const intro = await c.call(
      'IntrospectToken',
      { token: secret1 },
      { authorization: `DPoP ${secret1}`, dpop: await proofFor('IntrospectToken', secret1) },
    );
    expect(intro).toMatchObject({ active: true, tokenType: 'DPoP', cnfJkt: key.jkt, tokenId: t1.id });
    // And exchanged as a subject token with a proof without ath (oauth4webapi sends none there).
    const ex = await c.call(
      'ExchangeToken',
      { grantType: GRANT, subjectToken: secret1, subjectTokenType: ACCESS_TOKEN },
      { dpop: await dpopProof(key, { htu: c.url('ExchangeToken'), iat: iatOf(s) }) },
    );
    issuedSecrets.add(ex.accessToken as string);
    expect(ex.tokenType).toBe('DPoP');
    expect(await stateOf(s, t1.id)).toMatchObject({ state: TokenState.ROTATED });
  });

  it(`upgrades an unbound token rotated with a proof to a bound successor over ${wire} on ${engine}`, async () => {
    const t0 = await createToken(s, undefined);
    const r = await rotate({
      authorization: `Bearer ${t0.secret}`,
      dpop: await proofFor('RotateToken', t0.secret),
    });
    expect(r.tokenType).toBe('DPoP');
    expect((r.token as { policy: { dpopJkt: string } }).policy.dpopJkt).toBe(key.jkt);
    // Without a proof the successor stays a bearer token.
    const u0 = await createToken(s, undefined);
    const plain = await rotate({ authorization: `Bearer ${u0.secret}` });
    expect(plain.tokenType).toBe('Bearer');
  });

  /** The bad-proof table (docs/dpop.md, "Errors"): each row, its message, and the family unchanged. */
  const rows: [string, () => Promise<CallHeaders>, RegExp][] = [
    ['no proof', async () => ({ authorization: `DPoP ${target.secret}` }), /DPoP proof missing/],
    [
      'a proof by another key',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await proofFor('RotateToken', target.secret, other),
      }),
      /signed by another key/,
    ],
    [
      'alg none',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: forgedProof('none', key, { htu: c.url('RotateToken'), accessToken: target.secret, iat: iatOf(s) }),
      }),
      /alg must be one of/,
    ],
    [
      'alg HS256',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: forgedProof('HS256', key, { htu: c.url('RotateToken'), accessToken: target.secret, iat: iatOf(s) }),
      }),
      /alg must be one of/,
    ],
    [
      'a private key in jwk',
      async () => {
        const { exportJWK } = await import('jose');
        const privateJwk = await exportJWK(key.privateKey);
        return {
          authorization: `DPoP ${target.secret}`,
          dpop: await dpopProof(key, {
            htu: c.url('RotateToken'),
            accessToken: target.secret,
            iat: iatOf(s),
            header: { jwk: privateJwk },
          }),
        };
      },
      /jwk must be a public key/,
    ],
    [
      'a wrong htm',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, {
          htu: c.url('RotateToken'),
          htm: 'GET',
          accessToken: target.secret,
          iat: iatOf(s),
        }),
      }),
      /htm must be "POST"/,
    ],
    [
      'a wrong htu',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, { htu: c.url('IntrospectToken'), accessToken: target.secret, iat: iatOf(s) }),
      }),
      /htu does not name this endpoint/,
    ],
    [
      'an iat too old',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, { htu: c.url('RotateToken'), accessToken: target.secret, iat: iatOf(s) - 120 }),
      }),
      /too old/,
    ],
    [
      'an iat in the future',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, { htu: c.url('RotateToken'), accessToken: target.secret, iat: iatOf(s) + 60 }),
      }),
      /iat lies in the future/,
    ],
    [
      'a wrong ath',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, { htu: c.url('RotateToken'), accessToken: `${target.secret}x`, iat: iatOf(s) }),
      }),
      /ath does not match/,
    ],
    [
      'no ath on a call',
      async () => ({
        authorization: `DPoP ${target.secret}`,
        dpop: await dpopProof(key, { htu: c.url('RotateToken'), iat: iatOf(s) }),
      }),
      /must carry ath/,
    ],
    [
      'a bound token sent as Bearer',
      async () => ({ authorization: `Bearer ${target.secret}`, dpop: await proofFor('RotateToken', target.secret) }),
      /send it as "authorization: DPoP <token>"/,
    ],
  ];

  it.each(rows)(
    `refuses %s with invalid_dpop_proof and changes nothing over ${wire} on ${engine}`,
    async (_row, headers, message) => {
      const f = await failure(c.call('RotateToken', {}, await headers()));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.meta('rotor-error')).toBe('invalid_dpop_proof');
      expect(f.rawMessage).toMatch(message);
      expect(f.meta('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);
      expect(await stateOf(s, target.id)).toEqual({ state: TokenState.ACTIVE, successorId: '' });
    },
  );

  it(`refuses a replayed proof (jti used before) over ${wire} on ${engine}`, async () => {
    const headers = { authorization: `DPoP ${target.secret}`, dpop: await proofFor('IntrospectToken', target.secret) };
    expect(await c.call('IntrospectToken', { token: target.secret }, headers)).toMatchObject({ active: true });
    const f = await failure(c.call('IntrospectToken', { token: target.secret }, headers));
    expect(f.code).toBe(Code.Unauthenticated);
    expect(f.meta('rotor-error')).toBe('invalid_dpop_proof');
    expect(f.rawMessage).toMatch(/jti has been used before/);
  });

  it(`a thief with a rotated bound token but not the key cannot revoke the family; the key holder still triggers reuse detection over ${wire} on ${engine}`, async () => {
    const t0 = await createToken(s, key.jkt, 0n);
    const r = await rotate({ authorization: `DPoP ${t0.secret}`, dpop: await proofFor('RotateToken', t0.secret) });
    const t1 = (r.token as { id: string }).id;
    // The thief: the old secret, with no proof, with its own key, or as a subject token. Every proof
    // is made before the first call starts, and each call is wrapped in failure() as it starts, so no
    // refusal can arrive while nothing is listening for it (an unhandled rejection).
    const wrongKeyProof = await proofFor('RotateToken', t0.secret, other);
    const exchangeProof = await dpopProof(other, { htu: c.url('ExchangeToken'), iat: iatOf(s) });
    const attempts = [
      failure(c.call('RotateToken', {}, { authorization: `DPoP ${t0.secret}` })),
      failure(c.call('RotateToken', {}, { authorization: `Bearer ${t0.secret}` })),
      failure(c.call('RotateToken', {}, { authorization: `DPoP ${t0.secret}`, dpop: wrongKeyProof })),
      failure(
        c.call(
          'ExchangeToken',
          { grantType: GRANT, subjectToken: t0.secret, subjectTokenType: ACCESS_TOKEN },
          { dpop: exchangeProof },
        ),
      ),
    ];
    for (const f of await Promise.all(attempts)) {
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.meta('rotor-error')).toBe('invalid_dpop_proof');
    }
    expect(await stateOf(s, t1)).toEqual({ state: TokenState.ACTIVE, successorId: '' });
    // The key holder presenting the rotated token: the key itself has leaked, reuse detection as today.
    const reuse = await failure(
      c.call('RotateToken', {}, { authorization: `DPoP ${t0.secret}`, dpop: await proofFor('RotateToken', t0.secret) }),
    );
    expect(reuse.code).toBe(Code.PermissionDenied);
    expect(reuse.meta('rotor-error')).toBe('reuse_detected');
    expect((await stateOf(s, t1)).state).toBe(TokenState.REVOKED);
  });

  it(`WatchExpiry with a bound bearer needs a proof when the stream opens over ${wire} on ${engine}`, async () => {
    const refused = await failure(c.firstEvent({ authorization: `DPoP ${target.secret}` }));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.meta('rotor-error')).toBe('invalid_dpop_proof');
    const first = await c.firstEvent({
      authorization: `DPoP ${target.secret}`,
      dpop: await dpopProof(key, { htu: c.url('WatchExpiry'), accessToken: target.secret, iat: iatOf(s) }),
    });
    expect(first).toMatchObject({ tokenId: target.id });
  });

  it(`introspection by an admin returns the thumbprint of a bound token and none for an unbound one over ${wire} on ${engine}`, async () => {
    const unbound = await createToken(s, undefined);
    const [bound, plain] = await Promise.all(
      [target, unbound].map((t) =>
        c.call('IntrospectToken', { token: t.secret }, { authorization: `Bearer ${s.adminSecret}` }),
      ),
    );
    expect(bound).toMatchObject({ active: true, tokenType: 'DPoP', cnfJkt: key.jkt });
    expect(plain).toMatchObject({ active: true, tokenType: 'Bearer', cnfJkt: '' });
  });
});

describe.each(withEngines<Wire>(['grpc', 'connect']))(
  'DPoP nonces (ROTOR_DPOP_NONCE=on) over %s on %s',
  (wire, engine) => {
    let s: TestServer;
    let c: DpopClient;
    let key: DpopKey;
    let held: Held;

    beforeAll(async () => {
      s = await startTestServer({ ROTOR_DPOP_NONCE: 'on', ROTOR_DPOP_MAX_AGE_SECONDS: '30' }, { engine });
      c = dpopClient(wire, s);
      key = await newDpopKey();
      held = await createToken(s, key.jkt);
    });
    afterAll(async () => {
      c?.close();
      await s?.stop();
    });

    const introspect = async (nonce: string | undefined) =>
      c.call(
        'IntrospectToken',
        { token: held.secret },
        {
          authorization: `DPoP ${held.secret}`,
          dpop: await dpopProof(key, {
            htu: c.url('IntrospectToken'),
            accessToken: held.secret,
            iat: iatOf(s),
            ...(nonce !== undefined && { nonce }),
          }),
        },
      );

    it(`answers a proof without a nonce with use_dpop_nonce and a fresh dpop-nonce, and accepts the retry over ${wire} on ${engine}`, async () => {
      const f = await failure(introspect(undefined));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.meta('rotor-error')).toBe('use_dpop_nonce');
      expect(f.meta('www-authenticate')).toMatch(/^DPoP error="use_dpop_nonce"/);
      const nonce = f.meta('dpop-nonce');
      expect(nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(await introspect(nonce)).toMatchObject({ active: true, cnfJkt: key.jkt });
    });

    it(`refuses a stale nonce with use_dpop_nonce and a new one over ${wire} on ${engine}`, async () => {
      const f = await failure(introspect(undefined));
      const stale = f.meta('dpop-nonce')!;
      s.clock.advance(61_000);
      const g = await failure(introspect(stale));
      expect(g.meta('rotor-error')).toBe('use_dpop_nonce');
      expect(g.rawMessage).toMatch(/stale nonce/);
      expect(g.meta('dpop-nonce')).not.toBe(stale);
      expect(await introspect(g.meta('dpop-nonce'))).toMatchObject({ active: true });
    });
  },
);
