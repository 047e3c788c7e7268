/**
 * The live feed against an in-memory log: sequence order, a hole in the sequence held back and
 * then skipped, a watcher's bounded buffer, heartbeats only for idle live watchers, shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EventRepository } from '../../src/app/store-ports.js';
import type { WatchedEvent } from '../../src/domain/token-event.js';
import { RotorError } from '../../src/domain/errors.js';
import { EventFeed } from '../../src/expiry/event-feed.js';
import type { Subscription } from '../../src/expiry/subscription.js';

/** The next item of a watcher (rejects when it ended). */
const take = (s: Subscription) => s.next().then((r) => r.value);

const quiet = { info() {}, warn() {}, error() {} };
/** The bearer of the watchers, and a check that always finds it valid. */
const CRED = { tokenId: 'tok_watcher', familyId: 'fam_watcher', ownerId: 'watcher' };
const valid = async () => ({ until: Infinity });

function ev(
  sequence: number,
  tokenId = 'tok_a1',
  type: WatchedEvent['type'] = 'revoked',
  thresholdSeconds: number | null = null,
): WatchedEvent {
  return {
    sequence,
    type,
    tokenId,
    familyId: 'fam_f1',
    ownerId: 'web',
    successorId: null,
    actor: 'x',
    peer: null,
    reason: null,
    occurredAt: 0,
    expiresAt: 0,
    thresholdSeconds,
  };
}

/** A log the test appends to: the two reads the feed makes. */
function memoryLog(rows: WatchedEvent[]): Pick<EventRepository, 'latestSequence' | 'tail'> {
  return {
    latestSequence: async () => rows.reduce((m, r) => Math.max(m, r.sequence), 0),
    tail: async (after, limit) =>
      rows
        .filter((r) => r.sequence > after)
        .sort((a, b) => a.sequence - b.sequence)
        .slice(0, limit),
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
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    const a = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [3600], CRED);
    const owner = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [3600], CRED);
    const other = feed.subscribe({ kind: 'family', familyId: 'fam_other' }, [3600], CRED);
    rows.push(ev(1), ev(2, 'tok_b1'), ev(3, 'tok_a1', 'expiring_soon', 3600), ev(4, 'tok_a1', 'expiring_soon', 86400));
    feed.wake();
    await settle(feed);
    const seqs = async (s: typeof a, n: number) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const item = await take(s);
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

  /** A credential check over a table the test edits; counts the checks per token. */
  function credentialTable() {
    const state = new Map<string, { until: number; problem?: string }>();
    const checks = new Map<string, number>();
    const check = async (tokenId: string) => {
      checks.set(tokenId, (checks.get(tokenId) ?? 0) + 1);
      return state.get(tokenId) ?? { until: Infinity };
    };
    return { state, checks, check };
  }
  const cred = (tokenId: string, familyId = `fam_of_${tokenId}`) => ({
    tokenId,
    familyId,
    ownerId: `owner_of_${tokenId}`,
  });
  const ended = async (w: Subscription) =>
    take(w).then(
      (i) => (i.kind === 'event' ? i.event!.sequence : -1),
      (e: RotorError) => `${e.code}: ${e.message}`,
    );

  it("an event in the family of a watcher's bearer re-checks it; a bearer that no longer authenticates ends its streams after the queued events", async () => {
    const rows: WatchedEvent[] = [];
    const t = credentialTable();
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: t.check,
    });
    await feed.start();
    // Watching its own token with it, and its owner with it; another bearer watches the owner.
    const own = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_me'] }, [], cred('tok_me', 'fam_me'));
    const owner = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], cred('tok_me', 'fam_me'));
    const other = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], cred('tok_admin'));
    await settle(feed);
    // One check per bearer when it first appears (for its time bound), not one per stream.
    expect(Object.fromEntries(t.checks)).toEqual({ tok_me: 1, tok_admin: 1 });
    t.state.set('tok_me', { until: 0, problem: 'token has been revoked' });
    rows.push({ ...ev(1, 'tok_me', 'revoked'), familyId: 'fam_me' }, ev(2, 'tok_x', 'revoked'));
    feed.wake();
    await settle(feed);
    const revoked = 'unauthenticated: bearer token has been revoked; reconnect with a valid token';
    // Every event read with the revocation is delivered, then the stream ends.
    expect([await ended(own), await ended(own)]).toEqual([1, revoked]);
    expect([await ended(owner), await ended(owner), await ended(owner)]).toEqual([1, 2, revoked]);
    expect([await ended(other), await ended(other)]).toEqual([1, 2]);
    expect(t.checks.get('tok_me')).toBe(2);
    expect(t.checks.get('tok_admin')).toBe(1); // not its family
    expect(feed.watchers).toBe(1);
  });

  it('ends the streams of a bearer whose time is up (expiry, end of an overlap window) on the clock alone, with the reason the check gives', async () => {
    const rows: WatchedEvent[] = [];
    const t = credentialTable();
    let now = 1_000;
    t.state.set('tok_short', { until: 5_000 });
    feed = new EventFeed(memoryLog(rows), () => now, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 100,
      bufferEvents: 10,
      checkCredential: t.check,
    });
    await feed.start();
    const w = feed.subscribe({ kind: 'family', familyId: 'fam_elsewhere' }, [], cred('tok_short'));
    const waiting = take(w).then(
      () => 'an item',
      (e: unknown) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(feed.watchers).toBe(1); // its time is not up
    t.state.set('tok_short', { until: 5_000, problem: 'token has expired' });
    now = 5_000;
    expect(await waiting).toMatchObject({
      code: 'unauthenticated',
      message: 'bearer token has expired; reconnect with a valid token',
    });
    expect(feed.watchers).toBe(0);
  });

  it('a check that fails (database gone) ends nothing and is logged', async () => {
    const rows: WatchedEvent[] = [];
    const warnings: string[] = [];
    feed = new EventFeed(
      memoryLog(rows),
      () => 0,
      { ...quiet, warn: (m: string) => void warnings.push(m) },
      {
        pollIntervalMs: 60_000,
        heartbeatMs: 60_000,
        bufferEvents: 10,
        checkCredential: () => Promise.reject(new Error('database unavailable')),
      },
    );
    await feed.start();
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_me'] }, [], cred('tok_me'));
    rows.push({ ...ev(1, 'tok_me', 'revoked'), familyId: 'fam_of_tok_me' });
    feed.wake();
    await settle(feed);
    expect(await ended(w)).toBe(1);
    expect(feed.watchers).toBe(1);
    expect(warnings).toContain(
      'could not check the bearer token of WatchExpiry streams; checking again on its next event',
    );
  });

  it('moves past a hole in the sequence at once (a hole is a rolled-back number) and offers what follows in order', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
    rows.push(ev(3), ev(4));
    feed.wake();
    await settle(feed);
    expect([feed.position, w.pending]).toEqual([4, 2]);
    const taken = [await take(w), await take(w)].map((item) => (item.kind === 'event' ? item.event.sequence : -1));
    expect(taken).toEqual([3, 4]);
  });

  it('a full buffer ends only that watcher with resource_exhausted; the feed never waits', async () => {
    const rows: WatchedEvent[] = [];
    feed = new EventFeed(memoryLog(rows), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 3,
      checkCredential: valid,
    });
    await feed.start();
    const slow = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], CRED);
    const fast = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], CRED);
    const got: number[] = [];
    const reader = (async () => {
      for (;;) {
        const item = await take(fast);
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
    await expect(take(slow)).rejects.toMatchObject({ code: 'resource_exhausted' });
    expect(feed.watchers).toBe(1);
  });

  it('without watchers a commit costs no read; the first subscriber catches the feed up, nothing lost', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    const log = memoryLog(rows);
    let reads = 0;
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => {
      reads++;
      return tail(after, limit);
    };
    feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    rows.push(ev(2));
    feed.wake();
    await settle(feed);
    expect([reads, feed.position]).toEqual([0, 1]);
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
    expect(w.liveFrom).toBe(1);
    await settle(feed);
    expect([reads, feed.position, w.pending]).toEqual([1, 2, 1]);
  });

  it('a poll without watchers moves to the end of the log with one cheap read, reading no events', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    const log = memoryLog(rows);
    let tails = 0;
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => {
      tails++;
      return tail(after, limit);
    };
    feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 20,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    rows.push(ev(2), ev(3, 'tok_b1'), ev(4));
    await new Promise((r) => setTimeout(r, 80));
    await settle(feed);
    expect([tails, feed.position]).toEqual([0, 4]);
    // A watcher from here on gets what follows.
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
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
    feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 20,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    log.latestSequence = async () => {
      const end = await latest();
      // The watcher arrives while the feed waits for the end of the log.
      await new Promise<void>((r) => (release = r));
      return end;
    };
    rows.push(ev(2), ev(3));
    await new Promise((r) => setTimeout(r, 40));
    const w = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
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
    feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    await feed.start();
    feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], CRED);
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
    feed = new EventFeed(memoryLog(rows), () => 42, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 100,
      bufferEvents: 3,
      checkCredential: valid,
    });
    await feed.start();
    const live = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
    const replaying = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
    live.markLive();
    const item = await take(live);
    expect(item).toEqual({ kind: 'heartbeat', sequence: 2, at: 42 });
    expect(replaying.pending).toBe(0);
    feed.close();
    await expect(take(live)).rejects.toMatchObject({
      code: 'unavailable',
      message: 'server is shutting down; reconnect with after_sequence set to the last sequence received',
    });
    expect(() => feed!.subscribe({ kind: 'owner', ownerId: 'web' }, [], CRED)).toThrow('server is shutting down');
  });
});

describe('EventFeed when the database is lost', () => {
  it('ends every stream with UNAVAILABLE when the log read fails as unavailable (not for other errors), and reads on once it answers', async () => {
    const rows: WatchedEvent[] = [ev(1)];
    let failWith: Error | undefined;
    const log = memoryLog(rows);
    const tail = log.tail.bind(log);
    log.tail = (after, limit) => (failWith ? Promise.reject(failWith) : tail(after, limit));
    const feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: valid,
    });
    try {
      await feed.start();
      const a = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
      const b = feed.subscribe({ kind: 'owner', ownerId: 'web' }, [], CRED);
      // Any other failure is logged and retried; the streams stay.
      failWith = new Error('syntax error');
      feed.wake();
      await settle(feed);
      expect([a.ended, b.ended, feed.watchers]).toEqual([false, false, 2]);
      failWith = new RotorError('unavailable', 'database unavailable: the connection failed; retry shortly');
      feed.wake();
      await settle(feed);
      for (const s of [a, b]) {
        await expect(take(s)).rejects.toMatchObject({
          code: 'unavailable',
          message: 'database unavailable; reconnect with after_sequence set to the last sequence received',
        });
      }
      expect(feed.watchers).toBe(0);
      // Back: a new watcher gets what was committed meanwhile, from the feed's old position.
      failWith = undefined;
      const c = feed.subscribe({ kind: 'tokens', tokenIds: ['tok_a1'] }, [], CRED);
      rows.push(ev(2));
      feed.wake();
      await settle(feed);
      const item = await take(c);
      expect(item.kind === 'event' ? item.event.sequence : -1).toBe(2);
    } finally {
      feed.close();
    }
  });
});
