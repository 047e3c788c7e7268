/**
 * The retention job (src/expiry/retention.ts) against a real server with a controllable clock, on
 * every engine of test/support/engines.ts: tokens whose whole family ended before the cutoff and
 * the log written before it are deleted, younger rows and live families kept (reuse detection
 * still works for them; a deleted family's secret is unknown); batches stay bounded; `0` keeps
 * everything; EXPIRING_SOON / EXPIRED stay written once; a watcher resuming below the deletion
 * mark gets OUT_OF_RANGE over both ports. On PostgreSQL, two replicas (two stores on one
 * database) running passes at once delete and count every row once.
 */
import { Code } from '@connectrpc/connect';
import knexFactory from 'knex';
import { afterEach, describe, expect, it } from 'vitest';
import type { Store, TransactionRunner } from '../../src/app/store-ports.js';
import { expiringSoonKey } from '../../src/domain/expiry.js';
import { RetentionJob, type RetentionResult } from '../../src/expiry/retention.js';
import { ExpiryScheduler } from '../../src/expiry/scheduler.js';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { openStore, type KnexStore } from '../../src/store/knex-store.js';
import { ENGINES, describeOnPostgres } from '../support/engines.js';
import { connectApi, failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, startTestServer, type TestServer } from '../support/server.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const quiet = { info() {}, warn() {}, error() {} };

/** A server whose clock the test moves; no timer runs the scheduler or the retention job. */
async function server(engine: 'sqlite' | 'postgres', env: Record<string, string> = {}) {
  const s = await startTestServer(
    { ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0', ROTOR_RETENTION_INTERVAL_MS: '0', ...env },
    { engine },
  );
  const api = grpcApi(s);
  // The bootstrap admin lives 30 days; the tests move the clock by months.
  const admin = (
    await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'ops',
        name: 'long admin',
        scopes: ['rotor:admin'],
        expiresAt: inMs(s.clock.now(), 360 * DAY),
      },
      s.adminSecret,
    )
  ).secret;
  const create = async (lifetimeMs: number, owner = 'ret') => {
    const r = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: owner,
        name: 'ret',
        scopes: ['rotor:rotate'],
        expiresAt: inMs(s.clock.now(), lifetimeMs),
      },
      admin,
    );
    return { id: r.token!.id, familyId: r.token!.familyId, secret: r.secret };
  };
  const rotate = async (secret: string) => {
    const r = await api.rotateToken({ idempotencyKey: newKey() }, secret);
    return { id: r.token!.id, familyId: r.token!.familyId, secret: r.secret };
  };
  return { s, api, admin, create, rotate };
}

async function tokenIds(s: TestServer): Promise<Set<string>> {
  return new Set((await s.rotor.store.knex('tokens').pluck('id')) as string[]);
}

async function eventCount(s: TestServer): Promise<number> {
  const [row] = (await s.rotor.store.knex('token_events').count({ n: '*' })) as { n: number | string }[];
  return Number(row!.n);
}

async function latest(s: TestServer): Promise<number> {
  return s.rotor.store.events.latestSequence();
}

describe.each(ENGINES)('retention on %s', (engine) => {
  let s: TestServer | undefined;
  let api: Api | undefined;
  afterEach(async () => {
    api?.close();
    await s?.stop();
    s = undefined;
    api = undefined;
  });

  it('deletes tokens whose whole family ended and the log written before the cutoff; keeps younger rows and every member of a live family', async () => {
    const t = await server(engine);
    ({ s, api } = t);
    const { create, rotate, admin } = t;
    const t0 = s.clock.now();
    const short = await create(DAY); // ended at t0 + 1 day
    const revoked = await create(300 * DAY);
    await t.api.revokeToken({ id: revoked.id }, admin); // ended at t0, expires much later
    const live1 = await create(300 * DAY);
    const live2 = await rotate(live1.secret); // live1 ended at t0 by rotation; live2 is live: keep both
    const dead1 = await create(2 * DAY);
    const dead2 = await rotate(dead1.secret); // the family ends at t0 + 2 days
    const mixed1 = await create(200 * DAY);
    const mixed2 = await rotate(mixed1.secret); // revoked at t0 + 50 days below: keeps mixed1 too
    const oldThrough = await latest(s);
    const oldEvents = await eventCount(s);

    s.clock.advance(50 * DAY);
    await t.api.revokeToken({ id: mixed2.id }, admin);
    s.clock.advance(45 * DAY);
    const recent = await create(DAY);
    await t.api.revokeToken({ id: recent.id }, admin); // ended at t0 + 95 days
    s.clock.advance(5 * DAY); // cutoff: t0 + 10 days
    const before = await eventCount(s);
    const everyToken = await tokenIds(s);

    const r = await s.rotor.retention.runOnce();
    expect(r).toEqual({ outcome: 'done', tokens: 4, events: oldEvents, batches: expect.any(Number) as number });
    const gone = [short, revoked, dead1, dead2].map((x) => x.id);
    expect(await tokenIds(s)).toEqual(new Set([...everyToken].filter((id) => !gone.includes(id))));
    for (const kept of [live1, live2, mixed1, mixed2, recent]) expect(everyToken.has(kept.id)).toBe(true);
    // Exactly the prefix written at t0 is gone, and the mark says where it ends.
    expect(await eventCount(s)).toBe(before - oldEvents);
    const [low] = (await s.rotor.store.knex('token_events').min({ min: 'sequence' })) as { min: number | string }[];
    expect(Number(low!.min)).toBeGreaterThan(oldThrough);
    expect(await s.rotor.store.events.deletedThrough()).toBe(oldThrough);
    expect(t0 + 10 * DAY).toBeLessThan(s.clock.now());

    // A second pass finds nothing.
    expect(await s.rotor.retention.runOnce()).toMatchObject({ outcome: 'done', tokens: 0, events: 0 });

    // A deleted family's secret is unknown now; a live family's rotated predecessor is still reuse.
    const unknown = await failure(t.api.rotateToken({ idempotencyKey: newKey() }, dead1.secret));
    expect([unknown.code, unknown.meta('rotor-error'), unknown.rawMessage]).toEqual([
      Code.Unauthenticated,
      'unauthenticated',
      'bearer token is unknown',
    ]);
    const reuse = await failure(t.api.rotateToken({ idempotencyKey: newKey() }, live1.secret));
    expect([reuse.code, reuse.meta('rotor-error')]).toEqual([Code.PermissionDenied, 'reuse_detected']);

    // /metrics counts what this replica deleted.
    const metrics = await (await fetch(`${s.httpUrl}/metrics`)).text();
    expect(metrics).toContain('rotor_retention_deleted_total{table="tokens"} 4\n');
    expect(metrics).toContain(`rotor_retention_deleted_total{table="token_events"} ${oldEvents}\n`);
    expect(metrics).toContain('rotor_retention_passes_total{result="ok"} 2\n');
  });

  it('a watcher resuming below the deletion mark gets OUT_OF_RANGE on both ports; at the mark it resumes', async () => {
    const t = await server(engine);
    ({ s, api } = t);
    const old = await t.create(DAY);
    const mark = await latest(s);
    s.clock.advance(100 * DAY);
    const fresh = await t.create(DAY);
    await t.api.revokeToken({ id: fresh.id }, t.admin);
    expect(await s.rotor.retention.runOnce()).toMatchObject({ outcome: 'done', tokens: 1 });
    expect((await tokenIds(s)).has(old.id)).toBe(false);
    expect(await s.rotor.store.events.deletedThrough()).toBe(mark);

    const connect = connectApi(s);
    for (const via of [t.api, connect]) {
      const w = via.watchExpiry({ ownerId: 'ret', afterSequence: BigInt(mark - 1) }, t.admin);
      const f = await w.ended;
      expect(f?.code, via.wire).toBe(Code.OutOfRange);
      expect(f?.rawMessage).toBe(
        `events up to sequence ${mark} were deleted by retention (ROTOR_RETENTION_DAYS); after_sequence ${mark - 1} is older: start again with include_snapshot and no after_sequence`,
      );
      expect(f?.meta('rotor-error')).toBe('events_purged');
      expect(w.received).toEqual([]);

      const ok = via.watchExpiry({ ownerId: 'ret', afterSequence: BigInt(mark) }, t.admin);
      const events = await ok.until(
        (e) => e.some((x) => x.tokenId === fresh.id && x.type === ExpiryEventType.REVOKED),
        10_000,
        'the replay after the mark',
      );
      expect(events.every((e) => e.sequence > BigInt(mark))).toBe(true);
      ok.cancel();
    }
  });

  it('deletes in bounded batches: many rows take several short transactions of at most the batch size', async () => {
    const t = await server(engine);
    ({ s, api } = t);
    for (let i = 0; i < 40; i++) await t.create(DAY, `batch-${i % 3}`);
    // Forty EXPIRED events in a row: their occurred_at is each token's expiry, not when they were
    // written, so whole pages of them are dated by the first later event (a look-ahead).
    s.clock.advance(2 * DAY);
    expect(await s.rotor.expiry.scheduler.runOnce()).toEqual({ expiringSoon: 0, expired: 40 });
    await t.create(DAY);
    const N = 41;
    s.clock.advance(100 * DAY);
    const before = await eventCount(s);
    const store = s.rotor.store;
    const sizes: number[] = [];
    // Counts what each transaction deleted, as the repositories report it.
    const counting: Pick<Store, 'runExclusive'> = {
      runExclusive: (name, work) =>
        store.runExclusive(name, (transaction) =>
          work((async (w) => {
            const r = (await transaction(w)) as { deletedIds?: string[]; deleted?: number };
            sizes.push(r.deletedIds?.length ?? r.deleted ?? 0);
            return r;
          }) as TransactionRunner),
        ),
    };
    const job = new RetentionJob(counting, s.clock.now, quiet, { retentionDays: 90, intervalMs: 0, batchSize: 7 });
    const r = await job.runOnce();
    expect(r.tokens).toBe(N);
    expect(r.events).toBe(before);
    expect(r.batches).toBe(sizes.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(7);
    expect(sizes.length).toBeGreaterThanOrEqual(Math.ceil(N / 7) + Math.ceil(before / 7));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(N + before);
    expect(await eventCount(s)).toBe(0);
    expect(job.stats()).toEqual({ passes: 1, failures: 0, elsewhere: 0, tokens: N, events: before });
  });

  it('ROTOR_RETENTION_DAYS=0 keeps everything', async () => {
    const t = await server(engine, { ROTOR_RETENTION_DAYS: '0' });
    ({ s, api } = t);
    await t.create(DAY);
    const tokens = await tokenIds(s);
    const events = await eventCount(s);
    s.clock.advance(3650 * DAY);
    expect(await s.rotor.retention.runOnce()).toEqual({ outcome: 'disabled', tokens: 0, events: 0, batches: 0 });
    expect(await tokenIds(s)).toEqual(tokens);
    expect(await eventCount(s)).toBe(events);
    expect(await s.rotor.store.events.deletedThrough()).toBe(0);
  });

  it('EXPIRING_SOON stays written once when its threshold is longer than the retention; EXPIRED once; both go with their token', async () => {
    const t = await server(engine, { ROTOR_RETENTION_DAYS: '10', ROTOR_EXPIRY_THRESHOLDS: '30d,1d' });
    ({ s, api } = t);
    const thresholds = [30 * 86400, 86400];
    const tok = await t.create(60 * DAY);
    /** The token's scheduler events as `sequence:key`: an event written again would show a new sequence. */
    const keyed = async () => {
      const rows = (await s!.rotor.store
        .knex('token_events')
        .where({ token_id: tok.id })
        .whereNotNull('unique_key')
        .orderBy('sequence')
        .select('sequence', 'unique_key')) as {
        sequence: number | string;
        unique_key: string;
      }[];
      return rows.map((r) => `${r.sequence}:${r.unique_key}`);
    };
    s.clock.advance(30 * DAY + HOUR);
    await s.rotor.expiry.scheduler.runOnce();
    const first = await keyed();
    expect(first.map((k) => k.replace(/^\d+:/, ''))).toEqual([expiringSoonKey(tok.id, 30 * 86400)]);

    // Fifteen days later the event is older than the 10-day retention, its token still live.
    s.clock.advance(15 * DAY);
    const r = await s.rotor.retention.runOnce();
    expect(r.events).toBeGreaterThan(0);
    expect(await keyed()).toEqual(first);
    // A scheduler starting afresh (its first pass reads (now, now + 30d]) finds it there: nothing twice.
    const fresh = new ExpiryScheduler(s.rotor.store.events, s.clock.now, quiet, {
      thresholdsSeconds: thresholds,
      intervalMs: 0,
    });
    expect(await fresh.runOnce()).toEqual({ expiringSoon: 0, expired: 0 });
    expect(await keyed()).toEqual(first);

    // It expires unseen by the 1d threshold, so only EXPIRED is written, once however many scan.
    s.clock.advance(16 * DAY);
    await s.rotor.expiry.scheduler.runOnce();
    await new ExpiryScheduler(s.rotor.store.events, s.clock.now, quiet, {
      thresholdsSeconds: thresholds,
      intervalMs: 0,
    }).runOnce();
    const second = await keyed();
    expect(second.map((k) => k.replace(/^\d+:/, ''))).toEqual([
      expiringSoonKey(tok.id, 30 * 86400),
      `expired:${tok.id}`,
    ]);
    expect(second[0]).toBe(first[0]);
    const later = await t.create(DAY); // an event written after EXPIRED dates it
    s.clock.advance(14 * DAY); // the token ended 13 days ago: past the retention, with its events
    await s.rotor.retention.runOnce();
    expect((await tokenIds(s)).has(tok.id)).toBe(false);
    expect(await keyed()).toEqual([]);
    await new ExpiryScheduler(s.rotor.store.events, s.clock.now, quiet, {
      thresholdsSeconds: thresholds,
      intervalMs: 0,
    }).runOnce();
    expect(await keyed()).toEqual([]);
    expect((await tokenIds(s)).has(later.id)).toBe(false);
  });
});

describeOnPostgres('retention with two replicas on one database on postgres', () => {
  let s: TestServer | undefined;
  let api: Api | undefined;
  let second: KnexStore | undefined;
  afterEach(async () => {
    api?.close();
    await second?.close();
    await s?.stop();
  });

  it('one pass at a time across replicas: the other skips, every row is deleted and counted once', async () => {
    const t = await server('postgres');
    ({ s, api } = t);
    second = await openStore({ url: s.databaseUrl }, { ttlMs: 0, maxEntries: 1 });
    for (let i = 0; i < 30; i++) await t.create(DAY);
    s.clock.advance(100 * DAY);
    let expectedTokens = 30;
    let expectedEvents = await eventCount(s);

    // A pass stopped inside its first transaction holds the lock; the other replica skips.
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const store = s.rotor.store;
    const paused: Pick<Store, 'runExclusive'> = {
      runExclusive: (name, work) =>
        store.runExclusive(name, (transaction) =>
          work((async (w) => {
            entered();
            await gate;
            return transaction(w);
          }) as TransactionRunner),
        ),
    };
    const a = new RetentionJob(paused, s.clock.now, quiet, { retentionDays: 90, intervalMs: 0, batchSize: 4 });
    const b = new RetentionJob(second, s.clock.now, quiet, { retentionDays: 90, intervalMs: 0, batchSize: 4 });
    const passA = a.runOnce();
    await inside;
    expect(await b.runOnce()).toEqual({ outcome: 'elsewhere', tokens: 0, events: 0, batches: 0 });
    open();
    expect(await passA).toMatchObject({ outcome: 'done', tokens: expectedTokens, events: expectedEvents });
    const firstEvents = expectedEvents;

    // The lock held by any other session: both skip and delete nothing.
    for (let i = 0; i < 20; i++) await t.create(DAY);
    s.clock.advance(100 * DAY);
    expectedTokens = 20 + 1; // and the bootstrap admin, expired 170 days ago
    expectedEvents = await eventCount(s);
    const holder = knexFactory({ client: 'pg', connection: s.databaseUrl, pool: { min: 1, max: 1 } });
    try {
      await holder.raw(`select pg_advisory_lock(hashtext('rotor:retention'))`);
      const skipped = await Promise.all([a.runOnce(), b.runOnce()]);
      expect(skipped.map((r) => r.outcome)).toEqual(['elsewhere', 'elsewhere']);
      expect(await eventCount(s)).toBe(expectedEvents);
    } finally {
      await holder.destroy();
    }

    // Passes racing on both replicas, several times: the totals are exactly what was there.
    const results: RetentionResult[] = [];
    for (let i = 0; i < 3; i++)
      results.push(...(await Promise.all([a.runOnce(), b.runOnce(), b.runOnce(), a.runOnce()])));
    expect(results.reduce((n, r) => n + r.tokens, 0)).toBe(expectedTokens);
    expect(results.reduce((n, r) => n + r.events, 0)).toBe(expectedEvents);
    expect(await eventCount(s)).toBe(0);
    // What the replicas report to /metrics adds up the same way.
    const [sa, sb] = [a.stats(), b.stats()];
    expect(sa.tokens + sb.tokens).toBe(30 + expectedTokens);
    expect(sa.events + sb.events).toBe(firstEvents + expectedEvents);
    expect(sa.elsewhere + sb.elsewhere).toBeGreaterThanOrEqual(3);
  });
});
