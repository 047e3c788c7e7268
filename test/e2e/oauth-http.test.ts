import { randomBytes } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../support/connect-client.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES } from '../support/engines.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

describe.each(ENGINES)('OAuth HTTP endpoints with oauth4webapi as the client on %s', (engine) => {
  let s: TestServer;
  let as: oauth.AuthorizationServer;
  const client: oauth.Client = { client_id: 'rotor-e2e' };
  const opts = { [oauth.allowInsecureRequests]: true } as const;

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    as = {
      issuer: s.httpUrl,
      token_endpoint: `${s.httpUrl}/oauth/token`,
      introspection_endpoint: `${s.httpUrl}/oauth/introspect`,
      revocation_endpoint: `${s.httpUrl}/oauth/revoke`,
    };
  });
  afterAll(async () => s.stop());

  async function newToken(scopes = ['rotor:rotate', 'read', 'write'], policy = {}) {
    const c = connectClient(TokenService, s.httpUrl, s.adminSecret);
    const res = await c.createToken({
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'svc',
      name: 'deployer',
      scopes,
      expiresAt: inMs(s.clock.now(), 86400_000),
      policy,
    });
    issuedSecrets.add(res.secret);
    return res;
  }

  async function exchange(params: Record<string, string>) {
    const response = await oauth.genericTokenEndpointRequest(as, client, oauth.None(), GRANT, params, opts);
    return oauth.processGenericTokenEndpointResponse(as, client, response);
  }

  it('rotates a token through the RFC 8693 token-exchange grant', async () => {
    const { token, secret } = await newToken();
    const result = await exchange({
      subject_token: secret,
      subject_token_type: ACCESS_TOKEN,
      scope: 'rotor:rotate read',
    });
    issuedSecrets.add(result.access_token);
    expect(result.token_type).toBe('bearer');
    expect(result.issued_token_type).toBe(ACCESS_TOKEN);
    expect(result.scope).toBe('rotor:rotate read');
    expect(result.expires_in).toBeGreaterThan(86000);
    expect(result.access_token).toMatch(/^rtr_sa_/);
    expect(result.access_token).not.toBe(secret);
    const admin = connectClient(TokenService, s.httpUrl, s.adminSecret);
    const old = await admin.getToken({ id: token!.id });
    expect(old.token?.state).toBe(TokenState.ROTATED);
    expect(old.token?.successorId).toBe(result.token_id);
  });

  it('returns the same successor for a retry with the same idempotency key', async () => {
    const { secret } = await newToken();
    const key = randomBytes(24).toString('base64url');
    const first = await exchange({ subject_token: secret, subject_token_type: ACCESS_TOKEN, idempotency_key: key });
    const again = await exchange({ subject_token: secret, subject_token_type: ACCESS_TOKEN, idempotency_key: key });
    issuedSecrets.add(first.access_token);
    expect(again.access_token).toBe(first.access_token);
    expect(again.token_id).toBe(first.token_id);
  });

  it('answers RFC 6749 §5.2 errors that oauth4webapi surfaces as ResponseBodyError', async () => {
    const { secret } = await newToken(['rotor:rotate', 'read']);
    const escalate = await exchange({
      subject_token: secret,
      subject_token_type: ACCESS_TOKEN,
      scope: 'read admin',
    }).catch((e: unknown) => e);
    expect(escalate).toBeInstanceOf(oauth.ResponseBodyError);
    expect(escalate).toMatchObject({
      status: 400,
      error: 'invalid_scope',
      error_description: 'requested scopes exceed the scopes held: admin',
    });

    const missingType = await exchange({ subject_token: secret }).catch((e: unknown) => e);
    expect(missingType).toMatchObject({
      status: 400,
      error: 'invalid_request',
      error_description: 'subject_token_type is required',
    });

    const rotated = await exchange({ subject_token: secret, subject_token_type: ACCESS_TOKEN });
    issuedSecrets.add(rotated.access_token);
    const again = await exchange({ subject_token: secret, subject_token_type: ACCESS_TOKEN }).catch((e: unknown) => e);
    expect(again).toMatchObject({ status: 400, error: 'invalid_request' });
    expect((again as oauth.ResponseBodyError).cause).toMatchObject({
      rotor_error: 'already_rotated',
      successor_id: rotated.token_id,
    });
  });

  it('introspects with a bearer credential (RFC 7662) and revokes by possession (RFC 7009)', async () => {
    const { token, secret } = await newToken();
    // Rotor authenticates introspection callers with a bearer token: a custom ClientAuth.
    const bearer: oauth.ClientAuth = (_as, _client, _body, headers) =>
      void headers.set('authorization', `Bearer ${s.adminSecret}`);
    const live = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, bearer, secret, opts),
    );
    expect(live).toMatchObject({
      active: true,
      token_id: token!.id,
      sub: 'svc',
      token_type: 'Bearer',
      scope: 'rotor:rotate read write',
    });

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), secret, opts));
    const dead = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, bearer, secret, opts),
    );
    expect(dead).toEqual({ active: false });

    // RFC 7009 §2.2: unknown tokens are answered 200 as well.
    await expect(
      oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), 'not-a-token', opts)),
    ).resolves.toBeUndefined();
  });

  it('refuses introspection without a bearer credential with 401 and WWW-Authenticate', async () => {
    const res = await fetch(`${s.httpUrl}/oauth/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'token=x',
    });
    expect(res.status).toBe(401);
    // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="rotor"');
    expect(await res.json()).toMatchObject({ error: 'invalid_token', error_description: 'missing bearer token' });
  });
});
