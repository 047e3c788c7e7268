/**
 * Workload identity with a real third-party issuer. `oidc-provider` on loopback issues JWT access tokens;
 * a CI job (oauth4webapi as the client) exchanges them at Rotor's /oauth/token: federation to a
 * service account, and the actor proof that rotates a bound token. The provider starts once per
 * file; Rotor runs on every engine (test/support/engines.ts) against it.
 */
import { decodeJwt, decodeProtectedHeader } from 'jose';
import * as oauth from 'oauth4webapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../support/connect-client.js';
import { startOidcIssuer, type OidcIssuer } from '../support/oidc-issuer.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES } from '../support/engines.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

describe('oidc-provider JWT access tokens exchanged at /oauth/token with oauth4webapi', () => {
  let op: OidcIssuer;
  const client: oauth.Client = { client_id: 'ci-job' };
  const opts = { [oauth.allowInsecureRequests]: true } as const;

  beforeAll(async () => {
    op = await startOidcIssuer();
  });
  afterAll(async () => op?.close());

  it('the provider issues RFC 9068 JWT access tokens for the CI client', async () => {
    const jwt = await op.accessToken();
    expect(decodeProtectedHeader(jwt)).toMatchObject({ alg: 'ES256', typ: 'at+jwt' });
    expect(decodeJwt(jwt)).toMatchObject({
      iss: op.issuer,
      sub: op.clientId,
      aud: 'rotor',
      client_id: op.clientId,
      scope: 'deploy',
    });
  });

  describe.each(ENGINES)('Rotor on %s', (engine) => {
    let s: TestServer;
    let rotor: oauth.AuthorizationServer;

    beforeAll(async () => {
      const trust = writeTrustConfig({
        issuers: [{ issuer: op.issuer, discovery: true, audiences: ['rotor'], algorithms: ['ES256'], typ: 'at+jwt' }],
        federation: [
          {
            issuer: op.issuer,
            subject: op.clientId,
            audience: 'rotor',
            claims: { client_id: op.clientId, scope: 'deploy' },
            service_account: 'sa-ci',
            scopes: ['deploy', 'read'],
            max_lifetime_seconds: 900,
          },
        ],
      });
      s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
      rotor = { issuer: s.httpUrl, token_endpoint: `${s.httpUrl}/oauth/token` };
    });
    afterAll(async () => s?.stop());

    async function exchange(params: Record<string, string>) {
      const response = await oauth.genericTokenEndpointRequest(rotor, client, oauth.None(), GRANT, params, opts);
      const result = await oauth.processGenericTokenEndpointResponse(rotor, client, response);
      issuedSecrets.add(result.access_token);
      return result;
    }

    async function rejected(params: Record<string, string>): Promise<oauth.ResponseBodyError> {
      try {
        await exchange(params);
      } catch (e) {
        if (e instanceof oauth.ResponseBodyError) return e;
        throw e;
      }
      throw new Error('expected the exchange to be refused');
    }

    it('federation: the JWT becomes a short-lived sa-ci token, narrowed on request; the JWT works once', async () => {
      const jwt = await op.accessToken();
      const result = await exchange({ subject_token: jwt, subject_token_type: JWT_TYPE, scope: 'deploy' });
      expect(result.issued_token_type).toBe(ACCESS_TOKEN);
      expect(result.scope).toBe('deploy');
      expect(result.access_token).toMatch(/^rtr_sa_/);
      // Capped by the JWT's remaining life (300 s) rather than the rule's 900 s.
      expect(result.expires_in).toBeLessThanOrEqual(300);
      expect(result.expires_in).toBeGreaterThan(280);
      const admin = connectClient(TokenService, s.httpUrl, s.adminSecret);
      const info = await admin.introspectToken({ token: result.access_token });
      expect(info).toMatchObject({ active: true, ownerId: 'sa-ci', kind: TokenKind.SERVICE_ACCOUNT });

      const again = await rejected({ subject_token: jwt, subject_token_type: JWT_TYPE });
      expect([again.status, again.error, again.error_description]).toEqual([
        400,
        'invalid_request',
        'subject_token has been used before (jti replay): request a fresh JWT',
      ]);
    });

    it('rotation of a bound token with the provider JWT as actor_token; the successor keeps the binding', async () => {
      const admin = connectClient(TokenService, s.httpUrl, s.adminSecret);
      const created = await admin.createToken({
        kind: TokenKind.PROJECT,
        ownerId: 'web',
        name: 'deploy',
        scopes: ['rotor:rotate', 'deploy'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
        policy: {
          workloadBinding: {
            issuer: op.issuer,
            subject: op.clientId,
            audience: 'rotor',
            claims: { client_id: op.clientId },
          },
        },
      });
      issuedSecrets.add(created.secret);

      const without = await rejected({ subject_token: created.secret, subject_token_type: ACCESS_TOKEN });
      expect([without.status, without.error]).toEqual([400, 'invalid_request']);

      const result = await exchange({
        subject_token: created.secret,
        subject_token_type: ACCESS_TOKEN,
        actor_token: await op.accessToken(),
        actor_token_type: JWT_TYPE,
      });
      const successor = (await admin.getToken({ id: result.token_id as string })).token!;
      expect(successor.policy?.workloadBinding).toMatchObject({ issuer: op.issuer, subject: op.clientId });
      expect((await admin.getToken({ id: created.token!.id })).token!.state).toBe(TokenState.ROTATED);
      const events = await s.rotor.store.events.list({ familyId: created.token!.familyId }, 10);
      const rotation = events.filter((e) => e.reason === 'rotated');
      expect(rotation.map((e) => [e.type, e.act])).toEqual([
        ['rotated', { iss: op.issuer, sub: op.clientId }],
        ['created', { iss: op.issuer, sub: op.clientId }],
      ]);
    });
  });
});
