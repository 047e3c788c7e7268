/**
 * The expiry scheduler: with a controllable clock, each threshold fires exactly once per token,
 * EXPIRED fires once, and nothing fires for rotated or revoked tokens' future thresholds; also
 * with several passes and with two schedulers on one database (a second connection, as a second
 * replica would have). Runs on every engine of test/support/engines.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expiredKey, expiringSoonKey } from '../../src/domain/expiry.js';
import type { TokenEvent } from '../../src/domain/token-event.js';
import { ExpiryScheduler } from '../../src/expiry/scheduler.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { openStore, type KnexStore } from '../../src/store/knex-store.js';
import { grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { ENGINES } from '../support/engines.js';
import { inMs, startTestServer, type TestServer } from '../support/server.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const THRESHOLDS = [30 * 86400, 7 * 86400, 86400, 3600];
const quiet = { info() {}, warn() {}, error() {} };

describe.each(ENGINES)('expiry scheduler on %s', (backend) => {
  let s: TestServer;
  let api: Api;
  let second: KnexStore;
  let other: ExpiryScheduler;

  // A fresh server per test: the clock moves by weeks, past the bootstrap admin's 30 days.
  beforeEach(async () => {
    s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine: backend });
    api = grpcApi(s);
    second = await openStore({ url: s.databaseUrl }, { ttlMs: 0, maxEntries: 1 });
    other = new ExpiryScheduler(second.events, s.clock.now, quiet, {
      thresholdsSeconds: THRESHOLDS,
      intervalMs: 0,
      batchSize: 3,
    });
  });
  afterEach(async () => {
    api?.close();
    await second?.close();
    await s?.stop();
  });

  async function token(lifetimeMs: number, owner: string) {
    const res = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: owner,
        name: 'sched',
        scopes: ['rotor:rotate'],
        expiresAt: inMs(s.clock.now(), lifetimeMs),
      },
      s.adminSecret,
    );
    return { id: res.token!.id, secret: res.secret };
  }

  async function scheduled(tokenId: string): Promise<TokenEvent[]> {
    const all = await s.rotor.store.events.list({ tokenId }, 1000);
    return all.filter((e) => e.type === 'expiring_soon' || e.type === 'expired');
  }

  /** Both schedulers, at the same time, `times` times. */
  async function scanAll(times = 3) {
    for (let i = 0; i < times; i++)
      await Promise.all([s.rotor.expiry.scheduler.runOnce(), other.runOnce(), other.runOnce()]);
  }

  it('fires each threshold once per token, then EXPIRED once; rotated and revoked tokens get no later events', async () => {
    const owner = `sched-${backend}`;
    // Forty days: every threshold applies. Twelve tokens, so the second scheduler's batches of 3 loop.
    const tokens = await Promise.all(Array.from({ length: 12 }, () => token(40 * DAY, owner)));
    const [rotated, revoked, ...plain] = tokens as [(typeof tokens)[0], (typeof tokens)[0], ...(typeof tokens)[0][]];
    await scanAll();
    for (const t of tokens) expect(await scheduled(t.id)).toEqual([]);

    s.clock.advance(10 * DAY + HOUR); // 30 days minus an hour left: the 30d threshold is due
    await scanAll();
    for (const t of tokens) {
      const ev = await scheduled(t.id);
      expect(ev.map((e) => [e.type, e.thresholdSeconds])).toEqual([['expiring_soon', 30 * 86400]]);
    }

    // Rotate one, revoke another: their 7d/1d/1h thresholds and EXPIRED must never come.
    const successor = await api.rotateToken({ idempotencyKey: newKey() }, rotated.secret);
    await api.revokeToken({ id: revoked.id }, s.adminSecret);

    s.clock.advance(23 * DAY); // 7 days minus an hour left
    await scanAll();
    s.clock.advance(6 * DAY); // 1 day minus an hour left
    await scanAll();
    s.clock.advance(DAY - 90 * 60_000); // 30 minutes left: the 1h threshold
    await scanAll();
    s.clock.advance(HOUR); // expired half an hour ago
    await scanAll();

    for (const t of plain) {
      const ev = await scheduled(t.id);
      expect(ev.map((e) => [e.type, e.thresholdSeconds])).toEqual([
        ['expiring_soon', 30 * 86400],
        ['expiring_soon', 7 * 86400],
        ['expiring_soon', 86400],
        ['expiring_soon', 3600],
        ['expired', null],
      ]);
      expect(ev.every((e) => e.actor === 'scheduler')).toBe(true);
    }
    for (const t of [rotated, revoked])
      expect((await scheduled(t.id)).map((e) => e.thresholdSeconds)).toEqual([30 * 86400]);
    // The successor has its own schedule, each entry at most once.
    const own = (await scheduled(successor.token!.id)).map((e) => `${e.type}:${e.thresholdSeconds}`);
    expect(own.length).toBeGreaterThan(0);
    expect(new Set(own).size).toBe(own.length);

    // The unique keys the log holds are the ones the domain defines.
    const keys = await s.rotor.store
      .knex('token_events')
      .whereIn(
        'token_id',
        plain.map((t) => t.id),
      )
      .whereNotNull('unique_key')
      .pluck('unique_key');
    expect(new Set(keys)).toEqual(
      new Set(plain.flatMap((t) => [...THRESHOLDS.map((th) => expiringSoonKey(t.id, th)), expiredKey(t.id)])),
    );
  });

  it('sends no threshold a token never crossed: a 2-day token gets 1d and 1h only', async () => {
    const t = await token(2 * DAY, `short-${backend}`);
    await scanAll(1);
    expect(await scheduled(t.id)).toEqual([]);
    s.clock.advance(DAY + HOUR);
    await scanAll(2);
    s.clock.advance(DAY - 2 * HOUR);
    await scanAll(2);
    expect((await scheduled(t.id)).map((e) => e.thresholdSeconds)).toEqual([86400, 3600]);
  });

  it('a restarted scheduler (fresh process state) writes nothing twice', async () => {
    const t = await token(3 * DAY, `restart-${backend}`);
    s.clock.advance(2 * DAY + HOUR);
    await scanAll(1);
    const before = await scheduled(t.id);
    expect(before.map((e) => e.thresholdSeconds)).toEqual([86400]);
    const fresh = new ExpiryScheduler(second.events, s.clock.now, quiet, {
      thresholdsSeconds: THRESHOLDS,
      intervalMs: 0,
    });
    expect(await fresh.runOnce()).toEqual({ expiringSoon: 0, expired: 0 });
    expect(await scheduled(t.id)).toEqual(before);
  });
});

describe.each(ENGINES)('several schedulers with unequal batches, passes racing, on %s', (backend) => {
  it('write every due threshold: a batch cut short by another scheduler winning its rows does not end the pass', async () => {
    const s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine: backend });
    const stores = await Promise.all(
      [0, 1, 2, 3].map(() => openStore({ url: s.databaseUrl }, { ttlMs: 0, maxEntries: 1 })),
    );
    const api = grpcApi(s);
    try {
      const N = 240;
      // Created 20 at a time: the order of creation does not matter, only the expiries.
      for (let i = 0; i < N; i += 20) {
        await Promise.all(
          Array.from({ length: 20 }, (_, k) =>
            api.createToken(
              {
                kind: TokenKind.SERVICE_ACCOUNT,
                ownerId: 'batch',
                name: `n${i + k}`,
                scopes: [],
                expiresAt: inMs(s.clock.now(), 2 * DAY + (i + k) * 1000),
              },
              s.adminSecret,
            ),
          ),
        );
      }
      const schedulers = [7, 13, 29, 61].map(
        (batchSize, i) =>
          new ExpiryScheduler(stores[i]!.events, s.clock.now, quiet, {
            thresholdsSeconds: [86400],
            intervalMs: 0,
            batchSize,
            maxBatchesPerPass: 100,
          }),
      );
      await Promise.all(schedulers.map((x) => x.runOnce())); // nothing due yet: the marks are set
      for (let step = 0; step < 3; step++) {
        s.clock.advance(step === 0 ? DAY + 600_000 : 60_000);
        await Promise.all(schedulers.map((x) => x.runOnce()));
      }
      const counted = (await s.rotor.store.knex('token_events').where({ type: 'expiring_soon' }).count({ n: '*' })) as {
        n: number | string;
      }[];
      expect(Number(counted[0]!.n)).toBe(N);
    } finally {
      api.close();
      for (const st of stores) await st.close();
      await s.stop();
    }
  }, 120_000);
});
