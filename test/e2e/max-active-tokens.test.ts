/**
 * A federation rule's `max_active_tokens` (docs/limits.md): 50 federations of one workload under a
 * cap of 3, sent all at once over gRPC (concurrent transactions on PostgreSQL), leave exactly 3
 * live tokens, the newest, and 47 `superseded` events (one per revoked token, type SUPERSEDED on
 * WatchExpiry, reason `superseded`); a superseded token no longer authenticates and says why; the
 * tokens of another subject under the same rule are not touched.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { ENGINES } from '../support/engines.js';
import { startTestIssuer, type TestIssuer } from '../support/jwt-issuer.js';
import { failure, grpcApi, type Api } from '../support/rotor-api.js';
import { issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

const CAP = 3;
const FEDERATIONS = 50;
const SUB = 'project_path:group/app:ref_type:branch:ref:main';
const OTHER_SUB = 'project_path:group/app:ref_type:branch:ref:dev';

describe.each(ENGINES)('max_active_tokens on a federation rule on %s', (engine) => {
  let ci: TestIssuer;
  let s: TestServer;
  let api: Api;

  beforeAll(async () => {
    ci = await startTestIssuer();
    const trust = writeTrustConfig({
      issuers: [{ issuer: ci.issuer, jwks_uri: ci.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] }],
      federation: [
        {
          issuer: ci.issuer,
          subject: 'project_path:group/app:*',
          audience: 'rotor',
          service_account: 'sa-ci',
          scopes: ['read'],
          max_lifetime_seconds: 600,
          max_active_tokens: CAP,
        },
      ],
    });
    s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
    api = grpcApi(s);
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
    await ci?.close();
  });

  const federate = async (sub: string) => {
    const r = await api.exchangeToken({
      grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subjectToken: await ci.sign(s.clock.now(), { sub }),
      subjectTokenType: JWT_TYPE,
    });
    issuedSecrets.add(r.accessToken);
    return r;
  };

  it(`leaves ${CAP} live tokens and ${FEDERATIONS - CAP} superseded events after ${FEDERATIONS} federations on ${engine}`, async () => {
    const other = await federate(OTHER_SUB);
    const issued = await Promise.all(Array.from({ length: FEDERATIONS }, () => federate(SUB)));

    const listed = await api.listTokens({ ownerId: 'sa-ci', pageSize: 200 }, s.adminSecret);
    const mine = listed.tokens.filter((t) => t.id !== other.tokenId);
    expect(mine).toHaveLength(FEDERATIONS);
    const live = mine.filter((t) => t.state === TokenState.ACTIVE);
    expect(live).toHaveLength(CAP);
    const revoked = mine.filter((t) => t.state === TokenState.REVOKED);
    expect(revoked).toHaveLength(FEDERATIONS - CAP);
    expect(new Set(revoked.map((t) => t.revokeReason))).toEqual(new Set(['superseded']));
    // The live ones are the newest: every superseded token was created no later than any live one.
    const ms = (t: (typeof mine)[number]) => Number(t.createdAt!.seconds) * 1000 + t.createdAt!.nanos / 1e6;
    expect(Math.max(...revoked.map(ms))).toBeLessThanOrEqual(Math.min(...live.map(ms)));

    const events = await s.rotor.store.knex('token_events').where({ type: 'superseded' }).select('token_id', 'reason');
    expect(events).toHaveLength(FEDERATIONS - CAP);
    expect(new Set(events.map((e: { token_id: string }) => e.token_id))).toEqual(new Set(revoked.map((t) => t.id)));
    expect(new Set(events.map((e: { reason: string }) => e.reason))).toEqual(new Set(['superseded']));

    // A superseded token is refused naming why; a live one and the other subject's token work.
    const gone = issued.find((r) => r.tokenId === revoked[0]!.id)!;
    const refused = await failure(api.introspectToken({ token: gone.accessToken }, gone.accessToken));
    expect(refused.code).toBe(Code.Unauthenticated);
    expect(refused.rawMessage).toMatch(/superseded at .+ by a newer token of the same workload/);
    const kept = issued.find((r) => r.tokenId === live[0]!.id)!;
    expect((await api.introspectToken({ token: kept.accessToken }, s.adminSecret)).active).toBe(true);
    expect((await api.introspectToken({ token: other.accessToken }, s.adminSecret)).active).toBe(true);

    // WatchExpiry names them SUPERSEDED, each with the token that took its place.
    const watch = api.watchExpiry({ ownerId: 'sa-ci', afterSequence: 0n }, s.adminSecret);
    try {
      await watch.until((w) => w.filter((e) => e.type === ExpiryEventType.SUPERSEDED).length >= FEDERATIONS - CAP);
      const superseded = watch.received.filter((e) => e.type === ExpiryEventType.SUPERSEDED);
      expect(superseded).toHaveLength(FEDERATIONS - CAP);
      expect(superseded.every((e) => e.reason === 'superseded' && e.successorId.startsWith('tok_'))).toBe(true);
    } finally {
      watch.cancel();
    }
  });
});
