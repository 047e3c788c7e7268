/**
 * A live-only watch (no after_sequence, no snapshot) sends every event that commits after the
 * call started, including one the shared feed read between the watch's "end of the log" read and
 * its joining the feed (the feed's position is then past that end; the gap is replayed from the log).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app/context.js';
import { watchEvents, type WatchItem } from '../../src/app/watch.js';
import { mintToken } from '../../src/domain/new-token.js';
import { DEFAULT_LIMITS, resolvePolicy } from '../../src/domain/policy.js';
import type { TokenRecord } from '../../src/domain/token.js';
import { EventFeed } from '../../src/expiry/event-feed.js';
import { loadConfig } from '../../src/runtime/config.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { ENGINES, scratchDatabase, type Engine } from '../support/engines.js';

async function databaseUrl(engine: Engine): Promise<{ url: string; drop(): Promise<void> }> {
  if (engine === 'postgres') return scratchDatabase();
  return { url: `sqlite://${join(mkdtempSync(join(tmpdir(), 'rotor-watch-')), 'rotor.db')}`, drop: async () => undefined };
}

describe.each(ENGINES)('live-only watch joining a feed that already moved on %s', (engine) => {
  let db: { url: string; drop(): Promise<void> };
  let app: AppContext & { store: KnexStore };
  let feed: EventFeed;
  beforeAll(async () => {
    db = await databaseUrl(engine);
    const config = loadConfig({
      ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-watch-data-')),
      ROTOR_DATABASE_URL: db.url,
      ROTOR_SECRET: 'watch-live-only-secret-0123456789abcdef',
    });
    app = await createApp(config, createLogger('error', () => undefined));
    feed = new EventFeed(app.store.events, app.now, { info() {}, warn() {}, error() {} }, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 100 });
    await feed.start();
    app.store.onEventsCommitted(() => feed.wake());
  });
  afterAll(async () => {
    feed?.close();
    await app?.store.close();
    await db?.drop();
  });

  async function tokenOf(owner: string): Promise<TokenRecord> {
    const now = Date.now();
    const policy = resolvePolicy({}, DEFAULT_LIMITS);
    const random = (n: number) => new Uint8Array(randomBytes(n));
    const t = mintToken({ kind: 'service_account', ownerId: owner, name: 'n', description: '', scopes: [], audiences: [], policy, expiresAt: now + 3_600_000 }, now, random, app.keys).record;
    await app.store.tokens.insert(t);
    return t;
  }

  async function revoke(t: TokenRecord): Promise<void> {
    await app.store.transaction(async (tx) => {
      await tx.tokens.revoke(t.id, 'revoked', Date.now());
      await tx.events.append([{ type: 'revoked', tokenId: t.id, familyId: t.familyId, successorId: null, actor: 'test', peer: null, reason: 'revoked', occurredAt: Date.now() }]);
    });
  }

  it('an event the feed read before the watch joined is replayed, not lost', async () => {
    // Another watcher keeps the feed reading on every commit.
    const other = feed.subscribe({ kind: 'owner', ownerId: 'someone-else' }, []);
    const token = await tokenOf('live-only');
    const events = app.store.events;
    const latest = events.latestSequence.bind(events);
    let injected = false;
    // The watch reads the end of the log; before it joins the feed, an event of its selection
    // commits and the feed (woken by the commit) reads past it.
    events.latestSequence = async () => {
      const end = await latest();
      if (!injected) {
        injected = true;
        await revoke(token);
        for (let i = 0; i < 100 && feed.position <= end; i++) await new Promise((r) => setTimeout(r, 10));
        expect(feed.position).toBeGreaterThan(end);
      }
      return end;
    };
    try {
      const plan = { selection: { kind: 'owner' as const, ownerId: 'live-only' }, thresholdsSeconds: [], afterSequence: undefined, includeSnapshot: false };
      const stream = watchEvents(app, { feed, thresholdsSeconds: [] }, plan);
      const first = await Promise.race([stream.next(), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 2000))]);
      expect(first).not.toBe('timeout');
      const item = (first as IteratorResult<WatchItem>).value as WatchItem;
      expect(item).toMatchObject({ kind: 'event', event: { type: 'revoked', tokenId: token.id } });
      await stream.return(undefined);
    } finally {
      events.latestSequence = latest;
      other.close();
    }
  });
});
