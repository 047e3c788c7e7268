/**
 * Database loss: losing the database during a test yields UNAVAILABLE / HTTP 503 within the
 * statement timeout, and the same process serves again once the database is back.
 *
 * PostgreSQL: the machine's PostgreSQL keeps running (other test runs use it); the server talks to
 * it through a TCP proxy (test/support/tcp-proxy.ts) that the test cuts (every socket destroyed,
 * new ones refused) and restores. A second case holds a row lock from another session, so a
 * rotation waits until `statement_timeout` cancels it.
 * SQLite: the equivalent cheap failure is another process holding the write lock past the busy
 * timeout (the statement timeout); reads still work in WAL mode, so only writes fail there.
 *
 * WatchExpiry (PostgreSQL): cutting the connection ends every open stream with UNAVAILABLE (the
 * feed's read of the log fails; it reads at once when its LISTEN connection drops), new streams
 * are refused, and once the database is back a watcher resuming with its last sequence gets
 * exactly the events it missed, including one another replica wrote during the outage, then live
 * ones. On SQLite a held write lock does not stop reads, so streams carry on there.
 */
import { Code } from '@connectrpc/connect';
import knexFactory from 'knex';
import sqlite3 from 'sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate } from '../../src/app/authenticate.js';
import { createToken } from '../../src/app/token-service.js';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { openStore } from '../../src/store/knex-store.js';
import { ENGINES, TEST_POSTGRES_URL } from '../support/engines.js';
import { type RpcFailure, connectApi, failure, grpcApi, type Api, type WatchStream } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { hostPortOf, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const TIMEOUT_MS = 1000;
/**
 * Scheduling slack on a loaded 2-core machine (CI runs both engines' files side by side), on top
 * of the statement timeout. Still far under what the calls would take without fail-fast handling:
 * knex's 60 s acquire timeout, or no bound at all for a query on a dead socket.
 */
const SLACK_MS = 3500;
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const UNAVAILABLE = /^database unavailable: .+; retry shortly$/;

/** Holds SQLite's write lock from a second connection, as another process would. */
async function holdSqliteWriteLock(file: string): Promise<() => Promise<void>> {
  const db = new sqlite3.Database(file);
  await new Promise<void>((resolve, reject) =>
    db.exec('PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE', (e) => (e ? reject(e) : resolve())),
  );
  return () =>
    new Promise<void>((resolve, reject) =>
      db.exec('ROLLBACK', (e) => (e ? reject(e) : db.close((e2) => (e2 ? reject(e2) : resolve())))),
    );
}

async function timed<T>(p: Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await p;
  return { value, ms: performance.now() - t0 };
}

describe.each(ENGINES)(
  'losing the database: UNAVAILABLE / 503, then the same process serves again, on %s',
  (engine) => {
    let s: TestServer;
    let proxy: TcpProxy | undefined;
    let grpc: Api;
    let connect: Api;

    beforeAll(async () => {
      if (engine === 'postgres') proxy = await startTcpProxy(hostPortOf(TEST_POSTGRES_URL!));
      // Cache off: every call reaches the database, so the test sees what the store does.
      s = await startTestServer(
        { ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: String(TIMEOUT_MS), ROTOR_TOKEN_CACHE_TTL_MS: '0' },
        { engine, rewriteDatabaseUrl: proxy?.rewrite },
      );
      grpc = grpcApi(s);
      connect = connectApi(s);
    });
    afterAll(async () => {
      grpc?.close();
      proxy?.restore();
      await s?.stop();
      await proxy?.close();
    });

    async function newToken() {
      const r = await grpc.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc-loss',
          name: 'app',
          scopes: ['rotor:rotate', 'read'],
          expiresAt: inMs(s.clock.now(), 3_600_000),
        },
        s.adminSecret,
      );
      issuedSecrets.add(r.secret);
      return { id: r.token!.id, secret: r.secret };
    }

    const form = (path: string, body: Record<string, string>, bearer?: string) =>
      fetch(`${s.httpUrl}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
        },
        body: new URLSearchParams(body),
      });

    function expectUnavailable(f: RpcFailure, ms: number) {
      expect(f.code).toBe(Code.Unavailable);
      expect(f.rawMessage).toMatch(UNAVAILABLE);
      expect(f.meta('rotor-error')).toBe('unavailable');
      expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    }

    async function expect503(res: Response, ms: number) {
      expect(res.status).toBe(503);
      const body = (await res.json()) as Record<string, string>;
      expect(body.error).toBe('temporarily_unavailable');
      expect(body.error_description).toMatch(UNAVAILABLE);
      expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    }

    /** Polls until `/healthz` and a rotation succeed again; returns how long that took. */
    async function recovered(): Promise<number> {
      const t0 = performance.now();
      for (;;) {
        const health = await fetch(`${s.httpUrl}/healthz`);
        if (health.status === 200) break;
        if (performance.now() - t0 > 10_000) throw new Error('the server did not recover within 10 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      return performance.now() - t0;
    }

    it('cut the connection: gRPC and Connect answer UNAVAILABLE, /oauth/token 503 temporarily_unavailable; restored: the same process rotates again', async () => {
      const a = await newToken();
      const b = await newToken();
      let release: () => Promise<void>;
      if (engine === 'postgres') {
        proxy!.cut();
        release = async () => proxy!.restore();
      } else {
        release = await holdSqliteWriteLock(s.databaseUrl.slice('sqlite://'.length));
      }
      try {
        const r1 = await timed(failure(grpc.rotateToken({}, a.secret)));
        expectUnavailable(r1.value, r1.ms);
        const r2 = await timed(failure(connect.rotateToken({}, b.secret)));
        expectUnavailable(r2.value, r2.ms);
        const r3 = await timed(
          failure(
            grpc.createToken(
              {
                kind: TokenKind.PROJECT,
                ownerId: 'p',
                name: 'n',
                scopes: ['read'],
                expiresAt: inMs(s.clock.now(), 60_000),
              },
              s.adminSecret,
            ),
          ),
        );
        expectUnavailable(r3.value, r3.ms);
        const r4 = await timed(
          form('/oauth/token', { grant_type: GRANT, subject_token: a.secret, subject_token_type: ACCESS_TOKEN }),
        );
        await expect503(r4.value, r4.ms);
        if (engine === 'postgres') {
          // Reads fail too once the connection is gone (on SQLite they still work).
          const r5 = await timed(failure(grpc.introspectToken({ token: a.secret }, s.adminSecret)));
          expectUnavailable(r5.value, r5.ms);
          const r6 = await timed(form('/oauth/introspect', { token: a.secret }, s.adminSecret));
          await expect503(r6.value, r6.ms);
          const r7 = await timed(fetch(`${s.httpUrl}/healthz`));
          expect(r7.value.status).toBe(503);
          expect(await r7.value.json()).toEqual({ status: 'unavailable' });
          expect(r7.ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
          // The signing keys (and the replay cache) are store repositories too: UNAVAILABLE, never a 500.
          const r8 = await timed(fetch(`${s.httpUrl}/.well-known/jwks.json`));
          await expect503(r8.value, r8.ms);
        }
      } finally {
        await release();
      }
      expect(await recovered()).toBeLessThan(10_000);
      // Nothing happened to the tokens while the database was away: both rotate normally now.
      const ra = await grpc.rotateToken({}, a.secret);
      issuedSecrets.add(ra.secret);
      expect(ra.token!.previousId).toBe(a.id);
      const rb = await connect.rotateToken({}, b.secret);
      issuedSecrets.add(rb.secret);
      expect(rb.token!.previousId).toBe(b.id);
      expect((await grpc.introspectToken({ token: ra.secret }, s.adminSecret)).active).toBe(true);
      // The failures were logged as unavailability, never as unexpected errors.
      expect(s.logs.some((l) => l.includes('"database unavailable"'))).toBe(true);
      expect(s.logs.filter((l) => /unexpected error|rpc handler failed/.test(l))).toEqual([]);
      // And counted for alerting (docs/metrics.md): each refused call, never as internal.
      const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
      const unavailable = Number(/^rotor_database_unavailable_total (\d+)$/m.exec(metrics)?.[1]);
      // Every refused call above but /healthz's probe (r1-r6 and r8 on PostgreSQL, r1-r4 on SQLite).
      expect(unavailable).toBeGreaterThanOrEqual(engine === 'postgres' ? 7 : 4);
      expect(metrics).toMatch(
        /^rotor_rpc_handled_total\{method="rotor.v1.TokenService\/RotateToken",code="unavailable"\} 2$/m,
      );
      expect(metrics).not.toMatch(/code="internal"/);
    });

    it.runIf(engine === 'postgres')(
      "cut the connection: open WatchExpiry streams end with UNAVAILABLE; restored: resuming with after_sequence gets exactly the missed events (another replica's included), then live ones",
      async () => {
        const owner = 'svc-loss-watch';
        const seed = await grpc.createToken(
          {
            kind: TokenKind.SERVICE_ACCOUNT,
            ownerId: owner,
            name: 'watched',
            scopes: ['rotor:rotate'],
            expiresAt: inMs(s.clock.now(), 3_600_000),
          },
          s.adminSecret,
        );
        issuedSecrets.add(seed.secret);
        const streams = [
          grpc.watchExpiry({ ownerId: owner, afterSequence: 0n }, s.adminSecret),
          connect.watchExpiry({ ownerId: owner, afterSequence: 0n }, s.adminSecret),
        ];
        for (const w of streams)
          await w.until((r) => r.some((e) => e.tokenId === seed.token!.id), 10_000, 'the created event');

        // "Another replica": the same database reached directly, not through the cut proxy.
        const direct = await openStore({ url: s.databaseUrl }, { ttlMs: 0, maxEntries: 1 });
        let duringOutage: string;
        proxy!.cut();
        try {
          const t0 = performance.now();
          const ends = await Promise.all(streams.map((w) => w.ended));
          const ms = performance.now() - t0;
          console.info(`WatchExpiry streams ended ${Math.round(ms)} ms after the cut`);
          for (const f of ends) {
            expect(f?.code).toBe(Code.Unavailable);
            expect(f?.rawMessage).toBe(
              'database unavailable; reconnect with after_sequence set to the last sequence received',
            );
          }
          // The feed reads the log at least every poll interval (1 s) and at once when its LISTEN connection drops.
          expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS + 1000);
          // A new stream is refused too while the database is away.
          const f = await grpc.watchExpiry({ ownerId: owner, afterSequence: 0n }, s.adminSecret).ended;
          expect(f?.code).toBe(Code.Unavailable);
          // Meanwhile another replica writes an event of the selection.
          const other = { ...s.rotor.app, store: direct };
          const caller = await authenticate(other, { authorization: `Bearer ${s.adminSecret}`, peer: null });
          const minted = await createToken(other, caller, {
            kind: 'service_account',
            ownerId: owner,
            name: 'while away',
            description: '',
            scopes: [],
            audiences: [],
            expiresAt: s.clock.now() + 3_600_000,
            policy: {},
          });
          issuedSecrets.add(minted.secret);
          duringOutage = minted.record.id;
        } finally {
          proxy!.restore();
          await direct.close();
        }
        await recovered();
        const rotated = await grpc.rotateToken({}, seed.secret);
        issuedSecrets.add(rotated.secret);

        const log = async () =>
          (
            await s.rotor.store.events.forSelection({ kind: 'owner', ownerId: owner }, 0, Number.MAX_SAFE_INTEGER, 1000)
          ).map((e) => `${e.sequence}:${e.tokenId}`);
        const asLog = (w: WatchStream) =>
          w.received.filter((e) => e.type !== ExpiryEventType.HEARTBEAT).map((e) => `${e.sequence}:${e.tokenId}`);
        for (const [i, api] of [grpc, connect].entries()) {
          const before = streams[i]!;
          const last = before.received.filter((e) => e.type !== ExpiryEventType.HEARTBEAT).at(-1)!.sequence;
          const resumed = api.watchExpiry({ ownerId: owner, afterSequence: last }, s.adminSecret);
          try {
            const want = await log();
            await resumed.until((r) => asLog(before).length + r.length >= want.length, 10_000, 'the missed events');
            expect([...asLog(before), ...asLog(resumed)]).toEqual(want);
            expect(asLog(resumed).some((e) => e.endsWith(`:${duringOutage}`))).toBe(true);
            // Then live, from the same process's feed.
            const live = await grpc.createToken(
              {
                kind: TokenKind.SERVICE_ACCOUNT,
                ownerId: owner,
                name: `live ${i}`,
                scopes: [],
                expiresAt: inMs(s.clock.now(), 3_600_000),
              },
              s.adminSecret,
            );
            issuedSecrets.add(live.secret);
            await resumed.until((r) => r.some((e) => e.tokenId === live.token!.id), 10_000, 'the live event');
            expect([...asLog(before), ...asLog(resumed)]).toEqual(await log());
          } finally {
            resumed.cancel();
          }
        }
        expect(s.logs.filter((l) => /unexpected error|rpc handler failed/.test(l))).toEqual([]);
      },
    );

    it.runIf(engine === 'postgres')(
      "a statement stuck behind another session's lock is cancelled by statement_timeout: UNAVAILABLE, then the rotation succeeds",
      async () => {
        const a = await newToken();
        const other = knexFactory({ client: 'pg', connection: s.databaseUrl, pool: { min: 0, max: 1 } });
        let releaseLock!: () => void;
        const held = new Promise<void>((r) => (releaseLock = r));
        let locked!: () => void;
        const isLocked = new Promise<void>((r) => (locked = r));
        const session = other.transaction(async (trx) => {
          await trx('tokens').where({ id: a.id }).forUpdate().select('id');
          locked();
          await held;
        });
        try {
          await isLocked;
          const r = await timed(failure(grpc.rotateToken({}, a.secret)));
          expectUnavailable(r.value, r.ms);
          expect(r.value.rawMessage).toBe('database unavailable: the statement timed out; retry shortly');
          expect(r.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
        } finally {
          releaseLock();
          await session;
          await other.destroy();
        }
        const ok = await grpc.rotateToken({}, a.secret);
        issuedSecrets.add(ok.secret);
        expect(ok.token!.previousId).toBe(a.id);
      },
    );
  },
);
