/**
 * Retire on first use (docs/rotation.md, "Retire on first use"), end to end over grpc-js and
 * Connect on both engines with the test server's controllable clock:
 *
 * - the predecessor authenticates after the rotation until the successor's first use, and not
 *   after it; a rotation of the predecessor is still rule 3 meanwhile;
 * - without any use of the successor it stops when `overlap_seconds` have passed;
 * - the first use writes one PREDECESSOR_RETIRED event that a watcher receives exactly once, and
 *   later uses of the successor write nothing at all (no UPDATE reaches the database);
 * - the policy needs overlap_seconds > 0, and successors inherit it.
 *
 * On PostgreSQL a second server on the same database plays replica B: the first use through B
 * retires the predecessor for a caller on A, whose token cache (60 s here) only a NOTIFY clears.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { describeOnPostgres, withEngines } from '../support/engines.js';
import { connectApi, failure, grpcApi, newKey, type Api, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

const DAY_MS = 86_400_000;
const OVERLAP_S = 3600n;

async function createRetiring(api: Api, s: TestServer, overlapSeconds = OVERLAP_S) {
  const res = await api.createToken(
    {
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'svc-retire',
      name: 'retiring',
      scopes: ['rotor:rotate', 'read'],
      expiresAt: inMs(s.clock.now(), DAY_MS),
      policy: { overlapSeconds, reuseGraceSeconds: 10n, retireOnFirstUse: true },
    },
    s.adminSecret,
  );
  issuedSecrets.add(res.secret);
  return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret, token: res.token! };
}

async function rotateWith(api: Api, secret: string) {
  const res = await api.rotateToken({ idempotencyKey: newKey() }, secret);
  issuedSecrets.add(res.secret);
  return { id: res.token!.id, secret: res.secret, token: res.token! };
}

describe.each(withEngines<Wire>(['grpc', 'connect']))('retire on first use over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;
  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
  });
  afterAll(async () => {
    api.close();
    await s.stop();
  });

  const activeForAdmin = async (secret: string) => (await api.introspectToken({ token: secret }, s.adminSecret)).active;

  it('the predecessor works until the successor is first used, and not after', async () => {
    const t = await createRetiring(api, s);
    expect(t.token.policy?.retireOnFirstUse).toBe(true);
    const succ = await rotateWith(api, t.secret);
    expect(succ.token.policy?.retireOnFirstUse).toBe(true);
    // Before any use of the successor: the predecessor still authenticates (rule 7's window).
    expect((await api.getToken({ id: t.id }, t.secret)).token!.successorId).toBe(succ.id);
    s.clock.advance(60_000);
    expect(await activeForAdmin(t.secret)).toBe(true);
    // Rule 3 is unchanged: the predecessor is never rotated again (after the grace: reuse). Shown
    // on another family below; here only inside the grace would be safe, and the grace is over.
    // First use of the successor.
    expect((await api.getToken({ id: succ.id }, succ.secret)).token!.id).toBe(succ.id);
    const f = await failure(api.getToken({ id: t.id }, t.secret));
    expect(f.code).toBe(Code.Unauthenticated);
    expect(f.rawMessage).toBe('bearer token has been rotated and its overlap window has ended');
    expect(await activeForAdmin(t.secret)).toBe(false);
    expect(await activeForAdmin(succ.secret)).toBe(true);
  });

  it('introspection of the successor by a resource server is its first use', async () => {
    const t = await createRetiring(api, s);
    const succ = await rotateWith(api, t.secret);
    expect(await activeForAdmin(t.secret)).toBe(true);
    expect(await activeForAdmin(succ.secret)).toBe(true);
    expect(await activeForAdmin(t.secret)).toBe(false);
  });

  it('without a use of the successor the predecessor stops when overlap_seconds have passed', async () => {
    const t = await createRetiring(api, s, 120n);
    const succ = await rotateWith(api, t.secret);
    s.clock.advance(100_000);
    expect(await activeForAdmin(t.secret)).toBe(true);
    s.clock.advance(25_000);
    expect(await activeForAdmin(t.secret)).toBe(false);
    // A first use after the window has nothing left to retire: no event for it.
    const before = await retiredEvents(s, t.id);
    expect((await api.getToken({ id: succ.id }, succ.secret)).token!.id).toBe(succ.id);
    expect(await retiredEvents(s, t.id)).toBe(before);
    expect(before).toBe(0);
  });

  it('a second rotation of the predecessor is still rule 3: already rotated in the grace, reuse after it', async () => {
    const t = await createRetiring(api, s);
    const succ = await rotateWith(api, t.secret);
    const inGrace = await failure(api.rotateToken({ idempotencyKey: newKey() }, t.secret));
    expect(inGrace.code).toBe(Code.FailedPrecondition);
    expect(inGrace.meta('rotor-successor-id')).toBe(succ.id);
    s.clock.advance(15_000);
    // Still authenticating ordinary calls (the successor is unused) ...
    expect(await activeForAdmin(t.secret)).toBe(true);
    // ... but rotating it again is reuse: the family goes.
    const reuse = await failure(api.rotateToken({}, t.secret));
    expect(reuse.code).toBe(Code.PermissionDenied);
    expect(await activeForAdmin(succ.secret)).toBe(false);
  });

  it('the first use writes one PREDECESSOR_RETIRED event, a watcher gets it once, and later uses write nothing', async () => {
    const t = await createRetiring(api, s);
    const watch = api.watchExpiry({ familyId: t.familyId }, s.adminSecret);
    try {
      await waitForWatchers(s, 1);
      const succ = await rotateWith(api, t.secret);
      await watch.until((es) => es.some((e) => e.type === ExpiryEventType.ROTATED && e.tokenId === t.id));
      const updates: string[] = [];
      // `last_used_at` is not retirement's write: it is recorded off the request path at most once a
      // minute per token (src/store/token-repository.ts), and the first use's own record may still be
      // in flight here, so a reload of the row may record it again. Every other write counts.
      const onQuery = (q: { sql: string }) => {
        if (/^\s*update\s+["`]?tokens["`]?\s+set\s+["`]?last_used_at["`]?\s*=\s*\S+\s+where/i.test(q.sql)) return;
        if (/^\s*update\s+["`]?tokens\b/i.test(q.sql) || /insert\s+into\s+["`]?token_events/i.test(q.sql))
          updates.push(q.sql);
      };
      // The first use: one transaction of two UPDATEs and the event.
      expect((await api.getToken({ id: succ.id }, succ.secret)).token!.id).toBe(succ.id);
      s.rotor.store.knex.on('query', onQuery);
      try {
        // Later uses, on every path that counts as a use: no database write at all.
        await Promise.all([
          ...Array.from({ length: 10 }, () => api.getToken({ id: succ.id }, succ.secret)),
          api.introspectToken({ token: succ.secret }, s.adminSecret),
          api.exchangeToken({
            grantType: 'urn:ietf:params:oauth:grant-type:token-exchange',
            subjectToken: succ.secret,
            subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token',
            requestedTokenType: 'urn:ietf:params:oauth:token-type:jwt',
          }),
        ]);
      } finally {
        s.rotor.store.knex.removeListener('query', onQuery);
      }
      expect(updates).toEqual([]);
      // A later event of the family, so that anything the uses wrote would have arrived before it.
      await api.revokeToken({ id: succ.id }, s.adminSecret);
      const events = await watch.until((es) =>
        es.some((e) => e.type === ExpiryEventType.REVOKED && e.tokenId === succ.id),
      );
      const retired = events.filter((e) => e.type === ExpiryEventType.PREDECESSOR_RETIRED);
      expect(retired).toHaveLength(1);
      expect(retired[0]!.tokenId).toBe(t.id);
      expect(retired[0]!.successorId).toBe(succ.id);
      expect(await retiredEvents(s, t.id)).toBe(1);
    } finally {
      watch.cancel();
    }
  });

  it('needs overlap_seconds > 0', async () => {
    const f = await failure(
      api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc-retire',
          name: 'no overlap',
          expiresAt: inMs(s.clock.now(), DAY_MS),
          policy: { overlapSeconds: 0n, retireOnFirstUse: true },
        },
        s.adminSecret,
      ),
    );
    expect(f.code).toBe(Code.InvalidArgument);
    expect(f.rawMessage).toContain('policy.retire_on_first_use needs policy.overlap_seconds > 0');
  });
});

async function retiredEvents(s: TestServer, tokenId: string): Promise<number> {
  const row = await s.rotor.store
    .knex('token_events')
    .where({ token_id: tokenId, type: 'predecessor_retired' })
    .count<{ n: number | string }[]>('* as n')
    .first();
  return Number(row?.n ?? 0);
}

describeOnPostgres('retire on first use across two replicas on postgres', () => {
  const SECRET = randomBytes(32).toString('base64url');
  let a: TestServer;
  let b: TestServer;
  let apiA: Api;
  let apiB: Api;
  beforeAll(async () => {
    // A caches token rows for 60 s: only the NOTIFY of B's event can make A see the retirement.
    a = await startTestServer({ ROTOR_SECRET: SECRET, ROTOR_TOKEN_CACHE_TTL_MS: '60000' }, { engine: 'postgres' });
    b = await startTestServer({ ROTOR_SECRET: SECRET }, { join: a });
    apiA = grpcApi(a);
    apiB = connectApi(b);
  });
  afterAll(async () => {
    apiA.close();
    apiB.close();
    await b.stop();
    await a.stop();
  });

  it('the first use through replica B retires the predecessor for a caller on replica A on postgres', async () => {
    const t = await createRetiring(apiA, a);
    const succ = await rotateWith(apiA, t.secret);
    // A caller on A authenticates with the predecessor: its row is now in A's cache.
    expect((await apiA.getToken({ id: t.id }, t.secret)).token!.id).toBe(t.id);
    expect((await apiA.getToken({ id: t.id }, t.secret)).token!.id).toBe(t.id);
    // The successor's first use, through B.
    expect((await apiB.getToken({ id: succ.id }, succ.secret)).token!.id).toBe(succ.id);
    // A refuses the predecessor as soon as the NOTIFY arrives (milliseconds; A's TTL is 60 s).
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await apiA.getToken({ id: t.id }, t.secret).then(
        () => 'ok' as const,
        (e: unknown) => e,
      );
      if (r !== 'ok') {
        expect((r as { code: Code }).code).toBe(Code.Unauthenticated);
        break;
      }
      if (Date.now() > deadline) throw new Error('replica A still accepts the retired predecessor after 10 s');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await retiredEvents(a, t.id)).toBe(1);
  });
});
