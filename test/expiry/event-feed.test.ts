/**
 * The live feed against an in-memory log: sequence order, a hole in the sequence held back and
 * then skipped, a watcher's bounded buffer, heartbeats only for idle live watchers, shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EventRepository } from '../../src/app/store-ports.js';
import type { WatchedEvent } from '../../src/domain/token-event.js';
import { RotorError } from '../../src/domain/errors.js';
import { EventFeed } from '../../src/expiry/event-feed.js';

const quiet = { info() {}, warn() {}, error() {} };

function ev(sequence: number, tokenId = 'tok_a1', type: WatchedEvent['type'] = 'revoked', thresholdSeconds: number | null = null): WatchedEvent {
  return { sequence, type, tokenId, familyId: 'fam_f1', ownerId: 'web', successorId: null, actor: 'x', peer: null, reason: null, occurredAt: 0, expiresAt: 0, thresholdSeconds };
}

/** A log the test appends to; only what the feed reads is implemented. */
function memoryLog(rows: WatchedEvent[]): EventRepository {
  const unused = () => Promise.reject(new Error('not used by the feed'));
  return {
    append: unused,
    list: unused,
    forSelection: unused,
    appendExpiringSoon: unused,
    appendExpired: unused,
    latestSequence: async () => rows.reduce((m, r) => Math.max(m, r.sequence), 0),
    tail: async (after, limit) => rows.filter((r) => r.sequence > after).sort((a, b) => a.sequence - b.sequence).slice(0, limit),
  };
}

const settle = async (feed: EventFeed) => {
  for (let i = 0; i < 5; i++) {
    await feed.settled();
    await new Promise((r) => setImmediate(r));
  }
};

describe('EventFeed', () => {
  let feed: EventFeed | undefined;
  afterEach(() => feed?.close());

  it('offers events in sequence order to the watchers of their token, owner or family only', async () => {
    const rows: WatchedEvent[] = [];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    const a = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [3600], 'tok_watcher');
    const owner = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [3600], 'tok_watcher');
    const other = feed.subscribe({ kind: 'family', familyId: 'fam_other' }, [3600], 'tok_watcher');
    rows.push(ev(1), ev(2, 'tok_b1'), ev(3, 'tok_a1', 'expiring_soon', 3600), ev(4, 'tok_a1', 'expiring_soon', 86400));
    feed.wake();
    await settle(feed);
    const seqs = async (s: typeof a, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const item = await s.take();
        out.push(item.kind === 'event' ? item.event.sequence : -1);
      }
      return out;
    };
    // The 1d threshold is not among the watcher's thresholds.
    expect(await seqs(a, 2)).toEqual([1, 3]);
    expect(await seqs(owner, 3)).toEqual([1, 2, 3]);
    expect(other.pending).toBe(0);
    expect(feed.position).toBe(4);
  });

  it('ends the streams of a revoked or expired bearer after the event that says so; a rotated bearer and other watchers go on', async () => {
    const rows: WatchedEvent[] = [];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    // Watching its own token with it, and watching the owner with it.
    const own = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_me'] }, [], 'tok_me');
    const owner = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_me');
    const admin = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_admin');
    const expiring = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_short');
    const rotating = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_rot');
    rows.push(ev(1, 'tok_me', 'revoked'), ev(2, 'tok_short', 'expired'), ev(3, 'tok_rot', 'rotated'), ev(4, 'tok_other', 'revoked'));
    feed.wake();
    await settle(feed);
    const ended = async (w: typeof own) => w.take().then((i) => (i.kind === 'event' ? i.event.sequence : -1), (e: RotorError) => `${e.code}: ${e.message}`);
    const revoked = 'unauthenticated: bearer token has been revoked; reconnect with a valid token';
    // The revocation reaches its own watcher first, then the stream ends.
    expect([await ended(own), await ended(own)]).toEqual([1, revoked]);
    expect([await ended(owner), await ended(owner)]).toEqual([1, revoked]);
    expect([await ended(expiring), await ended(expiring), await ended(expiring)]).toEqual([1, 2, 'unauthenticated: bearer token has expired; reconnect with a valid token']);
    expect([await ended(admin), await ended(admin), await ended(admin), await ended(admin)]).toEqual([1, 2, 3, 4]);
    expect([await ended(rotating), await ended(rotating), await ended(rotating), await ended(rotating)]).toEqual([1, 2, 3, 4]);
    expect(feed.watchers).toBe(2);
  });

  it('ends a waiting stream of a revoked bearer at once when none of its events is queued', async () => {
    const rows: WatchedEvent[] = [];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    const w = feed.subscribe({ kind: 'family', familyId: 'fam_elsewhere' }, [], 'tok_me');
    const waiting = w.take().then(
      () => 'an item',
      (e: unknown) => e,
    );
    rows.push({ ...ev(1, 'tok_me', 'family_revoked'), familyId: 'fam_mine' });
    feed.wake();
    await settle(feed);
    expect(await waiting).toMatchObject({ code: 'unauthenticated', message: 'bearer token has been revoked; reconnect with a valid token' });
    expect(feed.watchers).toBe(0);
  });

  it('moves past a hole in the sequence at once (a hole is a rolled-back number) and offers what follows in order', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    rows.push(ev(3), ev(4));
    feed.wake();
    await settle(feed);
    expect([feed.position, w.pending]).toEqual([4, 2]);
    const taken = [await w.take(), await w.take()].map((item) => (item.kind === 'event' ? item.event.sequence : -1));
    expect(taken).toEqual([3, 4]);
  });

  it('a full buffer ends only that watcher with resource_exhausted; the feed never waits', async () => {
    const rows: WatchedEvent[] = [];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 3 });
    await feed.start();
    const slow = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_watcher');
    const fast = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_watcher');
    const got: number[] = [];
    const reader = (async () => {
      for (;;) {
        const item = await fast.take();
        if (item.kind === 'event') got.push(item.event.sequence);
        if (got.length === 5) return;
      }
    })();
    for (let i = 1; i <= 5; i++) {
      rows.push(ev(i));
      feed.wake();
      await settle(feed);
    }
    await reader;
    expect(got).toEqual([1, 2, 3, 4, 5]);
    await expect(slow.take()).rejects.toMatchObject({ code: 'resource_exhausted' });
    expect(feed.watchers).toBe(1);
  });

  it('without watchers a commit costs no read; the first subscriber catches the feed up, nothing lost', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    const log = memoryLog(rows);
    let reads = 0;
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => (reads++, tail(after, limit));
    feed = new EventFeed(log, () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    rows.push(ev(2));
    feed.wake();
    await settle(feed);
    expect([reads, feed.position]).toEqual([0, 1]);
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    expect(w.liveFrom).toBe(1);
    await settle(feed);
    expect([reads, feed.position, w.pending]).toEqual([1, 2, 1]);
  });

  it('a poll without watchers moves to the end of the log with one cheap read, reading no events', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    const log = memoryLog(rows);
    let tails = 0;
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => (tails++, tail(after, limit));
    feed = new EventFeed(log, () => 0, quiet, { pollIntervalMs: 20, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    rows.push(ev(2), ev(3, 'tok_b1'), ev(4));
    await new Promise((r) => setTimeout(r, 80));
    await settle(feed);
    expect([tails, feed.position]).toEqual([0, 4]);
    // A watcher from here on gets what follows.
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    expect(w.liveFrom).toBe(4);
    rows.push(ev(5));
    feed.wake();
    await settle(feed);
    expect([feed.position, w.pending]).toEqual([5, 1]);
  });

  it('a watcher that subscribes while that cheap read is in flight keeps its start: the feed reads the events for it', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    const log = memoryLog(rows);
    let release: () => void = () => undefined;
    const latest = log.latestSequence.bind(log);
    feed = new EventFeed(log, () => 0, quiet, { pollIntervalMs: 20, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    let w: ReturnType<EventFeed['subscribe']> | undefined;
    log.latestSequence = async () => {
      const end = await latest();
      // The watcher arrives while the feed waits for the end of the log.
      await new Promise<void>((r) => (release = r));
      return end;
    };
    rows.push(ev(2), ev(3));
    await new Promise((r) => setTimeout(r, 40));
    w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    expect(w.liveFrom).toBe(1);
    release();
    log.latestSequence = latest;
    await settle(feed);
    expect([feed.position, w.pending]).toEqual([3, 2]);
  });

  it('a notification for a sequence the running read covers causes no second read; a plain wake or a newer sequence does', async () => {
    const rows: WatchedEvent[] = [];
    const log = memoryLog(rows);
    let tails = 0;
    let gate: (() => void) | undefined;
    const tail = log.tail.bind(log);
    log.tail = async (after, limit) => {
      tails++;
      await new Promise<void>((r) => (gate = r));
      return tail(after, limit);
    };
    feed = new EventFeed(log, () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    await feed.start();
    feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_watcher');
    const step = async () => {
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      gate?.();
      gate = undefined;
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    };

    // A local commit wakes the feed; its own NOTIFY (sequence 1) arrives during that read.
    rows.push(ev(1));
    feed.wake();
    feed.wake(1);
    await step();
    await step();
    expect([tails, feed.position]).toEqual([1, 1]);
    feed.wake(1); // late echo: already read
    await step();
    expect(tails).toBe(1);

    // A notification for a sequence the running read may not have seen: one more read.
    rows.push(ev(2));
    feed.wake();
    feed.wake(3);
    await step(); // this read sees only 2
    rows.push(ev(3));
    await step();
    expect(feed.position).toBe(3);
    expect(tails).toBe(3);

    // A plain wake during a read (a commit whose sequence is unknown) also reads once more.
    rows.push(ev(4));
    feed.wake();
    feed.wake();
    await step();
    await step();
    expect([tails, feed.position]).toEqual([5, 4]);
  });

  it('heartbeats go to live, idle watchers with nothing pending; close ends every watcher with unavailable', async () => {
    const rows: WatchedEvent[] = [ev(1), ev(2, 'tok_zz1')];
    feed = new EventFeed(memoryLog(rows), () => 42, quiet, { pollIntervalMs: 60_000, heartbeatMs: 100, bufferEvents: 3 });
    await feed.start();
    const live = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    const replaying = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
    live.markLive();
    const item = await live.take();
    expect(item).toEqual({ kind: 'heartbeat', sequence: 2, at: 42 });
    expect(replaying.pending).toBe(0);
    feed.close();
    await expect(live.take()).rejects.toMatchObject({ code: 'unavailable', message: 'server is shutting down; reconnect with after_sequence set to the last sequence received' });
    expect(() => feed!.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_watcher')).toThrow('server is shutting down');
  });
});

describe('EventFeed when the database is lost', () => {
  it('ends every stream with UNAVAILABLE when the log read fails as unavailable (not for other errors), and reads on once it answers', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    let failWith: Error | undefined;
    const log = memoryLog(rows);
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => (failWith ? Promise.reject(failWith) : tail(after, limit));
    const feed = new EventFeed(log, () => 0, quiet, { pollIntervalMs: 60_000, heartbeatMs: 60_000, bufferEvents: 10 });
    try {
      await feed.start();
      const a = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
      const b = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], 'tok_watcher');
      // Any other failure is logged and retried; the streams stay.
      failWith = new Error('syntax error');
      feed.wake();
      await settle(feed);
      expect([a.ended, b.ended, feed.watchers]).toEqual([false, false, 2]);
      failWith = new RotorError('unavailable', 'database unavailable: the connection failed; retry shortly');
      feed.wake();
      await settle(feed);
      for (const s of [a, b]) {
        await expect(s.take()).rejects.toMatchObject({ code: 'unavailable', message: 'database unavailable; reconnect with after_sequence set to the last sequence received' });
      }
      expect(feed.watchers).toBe(0);
      // Back: a new watcher gets what was committed meanwhile, from the feed's old position.
      failWith = undefined;
      const c = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], 'tok_watcher');
      rows.push(ev(2));
      feed.wake();
      await settle(feed);
      const item = await c.take();
      expect(item.kind === 'event' ? item.event.sequence : -1).toBe(2);
    } finally {
      feed.close();
    }
  });
});
