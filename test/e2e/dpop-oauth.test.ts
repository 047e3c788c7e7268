/**
 * DPoP at the OAuth endpoints of the HTTP port (docs/dpop.md): oauth4webapi's DPoP handle
 * exchanges a bound token at /oauth/token (with and without server nonces), /oauth/introspect
 * names the key, bad proofs are 400 invalid_dpop_proof, and a test acting as a resource server
 * verifies a JWT access token minted from a bound token and its `cnf.jkt` with jose. On
 * PostgreSQL, a proof accepted by one replica is refused as a replay by another.
 */
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { describeOnPostgres, ENGINES } from '../support/engines.js';
import { dpopClient } from '../support/dpop-client.js';
import { dpopProof, newDpopKey, type DpopKey } from '../support/dpop.js';
import { addressOf, startReplicas, type ReplicaSet } from '../support/replicas.js';
import { connectApi, failure } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';

const DAY = 86_400_000;
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const client: oauth.Client = { client_id: 'dpop-e2e' };
const insecure = { [oauth.allowInsecureRequests]: true } as const;

async function createBound(
  s: Pick<TestServer, 'httpUrl' | 'adminSecret'>,
  jkt: string,
  now: number,
): Promise<{ id: string; secret: string }> {
  const r = await connectApi(s).createToken(
    {
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'svc',
      name: 'dpop',
      scopes: ['read', 'rotor:rotate'],
      expiresAt: inMs(now, DAY),
      policy: { dpopJkt: jkt },
    },
    s.adminSecret,
  );
  issuedSecrets.add(r.secret);
  return { id: r.token!.id, secret: r.secret };
}

async function discover(s: TestServer): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(s.httpUrl);
  return oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  );
}

/** POST a form to an OAuth endpoint with extra headers; the status, JSON body and headers. */
async function post(url: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

describe.each(ENGINES)('DPoP at the OAuth endpoints on %s', (engine) => {
  let s: TestServer;
  let nonced: TestServer;

  beforeAll(async () => {
    [s, nonced] = await Promise.all([
      startTestServer({}, { engine }),
      startTestServer({ ROTOR_DPOP_NONCE: 'on' }, { engine }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([s?.stop(), nonced?.stop()]);
  });

  /** oauth4webapi's RFC 8693 exchange with its DPoP handle; the processed answer. */
  async function exchange(as: oauth.AuthorizationServer, dpop: oauth.DPoPHandle, params: Record<string, string>) {
    const r = await oauth.processGenericTokenEndpointResponse(
      as,
      client,
      await oauth.genericTokenEndpointRequest(as, client, oauth.None(), GRANT, params, { DPoP: dpop, ...insecure }),
    );
    issuedSecrets.add(r.access_token);
    return r;
  }

  it(`oauth4webapi's DPoP handle exchanges a bound token; the answer's token_type is DPoP on ${engine}`, async () => {
    const as = await discover(s);
    const keyPair = await oauth.generateKeyPair('ES256');
    const dpop = oauth.DPoP(client, keyPair);
    const held = await createBound(s, await dpop.calculateThumbprint(), s.clock.now());
    const r = await exchange(as, dpop, { subject_token: held.secret, subject_token_type: ACCESS_TOKEN });
    expect(r.token_type).toBe('dpop');
    // The successor is bound too: exchanged again with the same handle.
    const again = await exchange(as, dpop, { subject_token: r.access_token, subject_token_type: ACCESS_TOKEN });
    expect(again.token_type).toBe('dpop');
    // Without the handle the bound successor is refused and stays usable.
    const bare = await post(`${s.httpUrl}/oauth/token`, {
      grant_type: GRANT,
      subject_token: again.access_token,
      subject_token_type: ACCESS_TOKEN,
    });
    expect(bare.status).toBe(400);
    expect(bare.body).toMatchObject({ error: 'invalid_dpop_proof', rotor_error: 'invalid_dpop_proof' });
    expect(bare.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);
  });

  it(`with ROTOR_DPOP_NONCE=on the first call gets use_dpop_nonce and oauth4webapi's retry succeeds on ${engine}`, async () => {
    const as = await discover(nonced);
    const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
    const held = await createBound(nonced, await dpop.calculateThumbprint(), nonced.clock.now());
    const params = { subject_token: held.secret, subject_token_type: ACCESS_TOKEN };
    let first: unknown;
    try {
      await exchange(as, dpop, params);
    } catch (e) {
      first = e;
    }
    expect(oauth.isDPoPNonceError(first)).toBe(true);
    expect((first as oauth.ResponseBodyError).status).toBe(400);
    const r = await exchange(as, dpop, params);
    expect(r.token_type).toBe('dpop');
  });

  it(`refuses bad proofs at /oauth/token with 400 invalid_dpop_proof and leaves the token usable on ${engine}`, async () => {
    const [key, other] = await Promise.all([newDpopKey(), newDpopKey()]);
    const held = await createBound(s, key.jkt, s.clock.now());
    const url = `${s.httpUrl}/oauth/token`;
    const form = { grant_type: GRANT, subject_token: held.secret, subject_token_type: ACCESS_TOKEN };
    const iat = Math.floor(s.clock.now() / 1000);
    const cases: [string, Record<string, string>, RegExp][] = [
      ['no proof', {}, /DPoP proof missing/],
      ['another key', { dpop: await dpopProof(other, { htu: url, iat }) }, /another key/],
      ['wrong htu', { dpop: await dpopProof(key, { htu: `${s.httpUrl}/oauth/introspect`, iat }) }, /htu/],
      [
        'wrong ath',
        { dpop: await dpopProof(key, { htu: url, iat, accessToken: 'rtr_sa_other' }) },
        /ath does not match/,
      ],
    ];
    const answers = await Promise.all(cases.map(([, headers]) => post(url, form, headers)));
    answers.forEach((a, i) => {
      expect(a.status, cases[i]![0]).toBe(400);
      expect(a.body.error, cases[i]![0]).toBe('invalid_dpop_proof');
      expect(a.body.error_description, cases[i]![0]).toMatch(cases[i]![2]);
    });
    const t = (await connectApi(s).getToken({ id: held.id }, s.adminSecret)).token!;
    expect(t.state).toBe(TokenState.ACTIVE);
    expect(t.successorId).toBe('');
  });

  it(`/oauth/revoke of a bound token needs a proof of its key on ${engine}`, async () => {
    const key = await newDpopKey();
    const held = await createBound(s, key.jkt, s.clock.now());
    const url = `${s.httpUrl}/oauth/revoke`;
    const thief = await post(url, { token: held.secret });
    expect(thief.status).toBe(400);
    expect(thief.body).toMatchObject({ error: 'invalid_dpop_proof' });
    expect((await connectApi(s).getToken({ id: held.id }, s.adminSecret)).token!.state).toBe(TokenState.ACTIVE);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        dpop: await dpopProof(key, { htu: url, iat: Math.floor(s.clock.now() / 1000) }),
      },
      body: new URLSearchParams({ token: held.secret }),
    });
    expect(res.status).toBe(200);
    expect((await connectApi(s).getToken({ id: held.id }, s.adminSecret)).token!.state).toBe(TokenState.REVOKED);
  });

  it(`/oauth/introspect returns cnf.jkt and token_type DPoP, and a bound caller proves its key (401 without) on ${engine}`, async () => {
    const key = await newDpopKey();
    const held = await createBound(s, key.jkt, s.clock.now());
    const url = `${s.httpUrl}/oauth/introspect`;
    const byAdmin = await post(url, { token: held.secret }, { authorization: `Bearer ${s.adminSecret}` });
    expect(byAdmin.body).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } });
    const self = await post(
      url,
      { token: held.secret },
      {
        authorization: `DPoP ${held.secret}`,
        dpop: await dpopProof(key, { htu: url, accessToken: held.secret, iat: Math.floor(s.clock.now() / 1000) }),
      },
    );
    expect(self.body).toMatchObject({ active: true, cnf: { jkt: key.jkt } });
    const noProof = await post(url, { token: held.secret }, { authorization: `DPoP ${held.secret}` });
    expect(noProof.status).toBe(401);
    expect(noProof.headers.get('www-authenticate')).toMatch(/^DPoP error="invalid_dpop_proof"/);
  });

  it(`a resource server verifies a JWT access token from a bound token with jose, and its cnf.jkt on ${engine}`, async () => {
    const as = await discover(s);
    const keyPair = await oauth.generateKeyPair('ES256');
    const dpop = oauth.DPoP(client, keyPair);
    const jkt = await dpop.calculateThumbprint();
    const held = await createBound(s, jkt, s.clock.now());
    const r = await exchange(as, dpop, {
      subject_token: held.secret,
      subject_token_type: ACCESS_TOKEN,
      requested_token_type: JWT,
    });
    expect(r.token_type).toBe('dpop');
    // The resource server: the JWT against the published keys, then the key it is bound to.
    const jwks = createRemoteJWKSet(new URL(as.jwks_uri!));
    const { payload } = await jwtVerify(r.access_token, jwks, { issuer: s.httpUrl, typ: 'at+jwt' });
    const cnf = payload.cnf as { jkt?: string } | undefined;
    expect(cnf?.jkt).toBe(jkt);
    // A proof made by the client for the resource: its jwk's thumbprint must equal cnf.jkt.
    const proofKey: DpopKey = {
      privateKey: keyPair.privateKey,
      publicJwk: (await crypto.subtle.exportKey('jwk', keyPair.publicKey)) as JWK,
      jkt,
    };
    const proof = await dpopProof(proofKey, { htu: 'https://api.example/resource', accessToken: r.access_token });
    const header = decodeProtectedHeader(proof) as { jwk: JWK };
    expect(await calculateJwkThumbprint(header.jwk, 'sha256')).toBe(cnf?.jkt);
    const other = await newDpopKey();
    expect(other.jkt).not.toBe(cnf?.jkt);
    // Introspection of the JWT names the same key.
    const intro = await post(
      `${s.httpUrl}/oauth/introspect`,
      { token: r.access_token },
      { authorization: `Bearer ${s.adminSecret}` },
    );
    expect(intro.body).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt } });
  });
});

describeOnPostgres('a DPoP proof replayed on a second replica on postgres', () => {
  let set: ReplicaSet;
  // Both replicas behind one public name: a proof names ROTOR_ISSUER plus the path (docs/dpop.md).
  const ISSUER = 'https://rotor.example';

  beforeAll(async () => {
    set = await startReplicas(2, { ROTOR_ISSUER: ISSUER });
  });
  afterAll(async () => {
    await set?.stop();
  });

  it('is accepted by the first replica and refused as a replay by the second on postgres', async () => {
    const [a, b] = set.replicas.map((r) => dpopClient('connect', addressOf(r)));
    const key = await newDpopKey();
    const held = await createBound(
      { httpUrl: addressOf(set.replicas[0]!).httpUrl, adminSecret: set.adminSecret },
      key.jkt,
      Date.now(),
    );
    const headers = {
      authorization: `DPoP ${held.secret}`,
      dpop: await dpopProof(key, { htu: `${ISSUER}/rotor.v1.TokenService/IntrospectToken`, accessToken: held.secret }),
    };
    expect(await a!.call('IntrospectToken', { token: held.secret }, headers)).toMatchObject({
      active: true,
      cnfJkt: key.jkt,
    });
    const f = await failure(b!.call('IntrospectToken', { token: held.secret }, headers));
    expect(f.meta('rotor-error')).toBe('invalid_dpop_proof');
    expect(f.rawMessage).toMatch(/jti has been used before/);
  });
});
