/**
 * Order of the event log for readers (migration 20261127_051_pg_event_commit_order): a watcher that
 * resumes "after k" must get every event committed with a lower sequence than the ones it saw.
 *
 * On PostgreSQL a `bigserial` number is drawn at INSERT, not at COMMIT. The test holds one
 * event-writing transaction (a real revocation through the API, its commit delayed by a gate)
 * open after its insert, while a second revocation runs. The second one may commit first with
 * the higher sequence. Without the event-order lock a live watcher receives it, disconnects, and
 * resumes after it, and the first event (lower sequence, committed a moment later) is never
 * delivered (verified by dropping the migration from the list). With it, readers settle the log
 * only up to where no transaction can still commit a lower sequence, so the watcher receives
 * nothing while the first transaction is open, and its stream and its resumed stream together
 * are exactly the log. SQLite (one writer) passes the same test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryEventType, type ExpiryEvent } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import type { Repositories } from '../../src/app/store-ports.js';
import { ENGINES } from '../support/engines.js';
import { grpcApi, type Api } from '../support/rotor-api.js';
import { inMs, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

/** Longer than any hold a reader might give a sequence gap (the feed's was 1 s). */
const HOLD_MS = 1500;

describe.each(ENGINES)('watchers never pass an event that can still commit below them, on %s', (engine) => {
  let s: TestServer;
  let api: Api;

  beforeAll(async () => {
    s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0', ROTOR_TOKEN_CACHE_TTL_MS: '0' }, { engine });
    api = grpcApi(s);
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
  });

  async function token(name: string) {
    const r = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'order',
        name,
        scopes: ['read'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
      },
      s.adminSecret,
    );
    return r.token!.id;
  }

  it('a transaction held open after its event insert: no later event reaches a watcher before it ends, and a watcher resuming after the later one misses nothing', async () => {
    const x = await token('held');
    const y = await token('later');
    const start = await s.rotor.store.events.latestSequence();
    const watcher = api.watchExpiry({ tokenIds: [x, y] }, s.adminSecret);
    await waitForWatchers(s, 1);

    // T1: the store transaction revoking X waits at its end, after its event insert, until released.
    // Told apart by what it wrote: other transactions may run meanwhile (the feed checks the
    // watcher's bearer in a read-only one).
    const store = s.rotor.store;
    const original = store.transaction.bind(store);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let inserted!: () => void;
    const heldOpen = new Promise<void>((r) => (inserted = r));
    let armed = true;
    store.transaction = (<T>(work: (tx: Repositories) => Promise<T>, options?: { lock?: string }) =>
      original(async (tx) => {
        const result = await work(tx);
        if (armed && (await tx.tokens.findById(x))?.revokedAt != null) {
          armed = false;
          inserted();
          await gate;
        }
        return result;
      }, options)) as typeof store.transaction;
    const t1 = api.revokeToken({ id: x }, s.adminSecret);
    await heldOpen;

    // T2: revoking Y, a transaction of its own that inserts an event too.
    let t2Done = false;
    const t2 = api.revokeToken({ id: y }, s.adminSecret).finally(() => (t2Done = true));
    let seen: ExpiryEvent[];
    try {
      await new Promise((r) => setTimeout(r, HOLD_MS));
      // Writers do not wait for each other on PostgreSQL (T2 usually committed by now; it queues
      // only behind a reader that is settling the log); on SQLite T2 waits for the one writer.
      console.info(
        `on ${engine}: T2 ${t2Done ? 'committed' : 'still waiting'} while T1 was held open for ${HOLD_MS} ms`,
      );
      // The watcher disconnects now; it resumes after the last sequence it received.
      watcher.cancel();
      seen = [...watcher.received];
    } finally {
      release();
      store.transaction = original;
    }
    await Promise.all([t1, t2]);

    const log = (
      await s.rotor.store.events.forSelection({ kind: 'tokens', tokenIds: [x, y] }, start, Number.MAX_SAFE_INTEGER, 100)
    ).map((e) => `${e.sequence}:${e.tokenId}`);
    expect(log).toHaveLength(2);
    // X's event (T1) has the lower sequence: it was inserted first.
    expect(log[0]!.endsWith(`:${x}`)).toBe(true);

    const after = seen.length > 0 ? seen[seen.length - 1]!.sequence : BigInt(start);
    const resumed = api.watchExpiry({ tokenIds: [x, y], afterSequence: after }, s.adminSecret);
    // Bounded so that a missing event shows as the diff below rather than as a timeout; the replay
    // takes milliseconds, the bound only has to outlast a loaded machine.
    await resumed
      .until((r) => seen.length + r.length >= log.length, 10_000, 'every logged event of X and Y')
      .catch(() => undefined);
    resumed.cancel();
    const got = [...seen, ...resumed.received]
      .filter((e) => e.type !== ExpiryEventType.HEARTBEAT)
      .map((e) => `${e.sequence}:${e.tokenId}`);
    expect(got).toEqual(log);
    // Why: while T1 was open, the log was settled only below T1's sequence, so the watcher got nothing.
    expect(seen).toEqual([]);
  });
});
