/**
 * The caps on open WatchExpiry streams, counted by the live feed (one place for both ports): per
 * bearer token, per owner id, per process; a refusal is `resource_exhausted` naming the cap, and
 * every way a stream ends gives its slot back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { EventRepository } from '../../src/app/store-ports.js';
import type { WatchCredential } from '../../src/app/watch-ports.js';
import { RotorError } from '../../src/domain/errors.js';
import type { WatchedEvent } from '../../src/domain/token-event.js';
import { exceededWatchStreamCap, watchStreamCapError } from '../../src/domain/watch-stream-caps.js';
import { EventFeed } from '../../src/expiry/event-feed.js';
import type { Subscription } from '../../src/expiry/subscription.js';

const quiet = { info() {}, warn() {}, error() {} };

/** Bearers A and B of owner x, C of owner y. */
const A: WatchCredential = { tokenId: 'tok_a', familyId: 'fam_a', ownerId: 'x' };
const B: WatchCredential = { tokenId: 'tok_b', familyId: 'fam_b', ownerId: 'x' };
const C: WatchCredential = { tokenId: 'tok_c', familyId: 'fam_c', ownerId: 'y' };

const TOKEN_FULL = (n: number) =>
  `too many WatchExpiry streams for this token (limit ${n}, ROTOR_WATCH_MAX_STREAMS_PER_TOKEN); close one or reuse a stream`;
const OWNER_FULL = (n: number) =>
  `too many WatchExpiry streams for this token's owner (limit ${n}, ROTOR_WATCH_MAX_STREAMS_PER_OWNER); close one or reuse a stream`;
const PROCESS_FULL = (n: number) =>
  `too many WatchExpiry streams on this server (limit ${n}, ROTOR_WATCH_MAX_STREAMS_PER_PROCESS); retry later or on another replica`;

function ev(sequence: number, tokenId: string, familyId: string): WatchedEvent {
  return {
    sequence,
    type: 'revoked',
    tokenId,
    familyId,
    ownerId: 'x',
    successorId: null,
    actor: 'x',
    peer: null,
    reason: null,
    occurredAt: 0,
    expiresAt: 0,
    thresholdSeconds: null,
  };
}

/** An in-memory log whose reads can be made to fail as a lost database does. */
function memoryLog(rows: WatchedEvent[]): Pick<EventRepository, 'latestSequence' | 'tail'> & { lost: boolean } {
  const log = {
    lost: false,
    latestSequence: async () => rows.reduce((m, r) => Math.max(m, r.sequence), 0),
    tail: async (after: number, limit: number) => {
      if (log.lost) throw new RotorError('unavailable', 'database unavailable: the connection failed; retry shortly');
      return rows
        .filter((r) => r.sequence > after)
        .sort((a, b) => a.sequence - b.sequence)
        .slice(0, limit);
    },
  };
  return log;
}

const settle = async (feed: EventFeed) => {
  for (let i = 0; i < 5; i++) {
    await feed.settled();
    await new Promise((r) => setImmediate(r));
  }
};

/** What subscribing throws, as `code: message`; 'opened' when it does not (the stream is closed again). */
function attempt(feed: EventFeed, credential: WatchCredential): string {
  try {
    feed.subscribe({ kind: 'tokens', tokenIds: [credential.tokenId] }, [], credential).close();
    return 'opened';
  } catch (e) {
    if (!(e instanceof RotorError)) throw e;
    return `${e.code}: ${e.message}`;
  }
}

describe('exceededWatchStreamCap', () => {
  const caps = { perToken: 2, perOwner: 3, perProcess: 4 };
  it.each([
    [{ token: 1, owner: 2, process: 3 }, undefined],
    [{ token: 2, owner: 2, process: 3 }, 'token'],
    [{ token: 2, owner: 3, process: 4 }, 'token'],
    [{ token: 1, owner: 3, process: 3 }, 'owner'],
    [{ token: 1, owner: 3, process: 4 }, 'owner'],
    [{ token: 1, owner: 2, process: 4 }, 'process'],
  ] as const)('%o open: %s', (open, cap) => {
    expect(exceededWatchStreamCap(open, caps)).toBe(cap);
  });
  it('names the cap, its value and its variable in a RESOURCE_EXHAUSTED error', () => {
    expect(
      [
        watchStreamCapError('token', caps),
        watchStreamCapError('owner', caps),
        watchStreamCapError('process', caps),
      ].map((e) => `${e.code}: ${e.message}`),
    ).toEqual([
      `resource_exhausted: ${TOKEN_FULL(2)}`,
      `resource_exhausted: ${OWNER_FULL(3)}`,
      `resource_exhausted: ${PROCESS_FULL(4)}`,
    ]);
  });
});

describe('EventFeed stream caps', () => {
  let feed: EventFeed | undefined;
  afterEach(() => feed?.close());

  it('refuses the stream past each cap, the narrowest first, and counts the refusals by cap', async () => {
    feed = new EventFeed(memoryLog([]), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 10,
      checkCredential: async () => ({ until: Infinity }),
      streamCaps: { perToken: 2, perOwner: 3, perProcess: 4 },
    });
    await feed.start();
    const sub = (c: WatchCredential) => feed!.subscribe({ kind: 'owner', ownerId: c.ownerId }, [], c);
    const a1 = sub(A);
    sub(A);
    expect(attempt(feed, A)).toBe(`resource_exhausted: ${TOKEN_FULL(2)}`);
    // B has a slot of its own, and takes the owner's last one.
    sub(B);
    expect(attempt(feed, B)).toBe(`resource_exhausted: ${OWNER_FULL(3)}`);
    // C's owner has room; the process has one slot left.
    sub(C);
    expect(attempt(feed, C)).toBe(`resource_exhausted: ${PROCESS_FULL(4)}`);
    // A refused stream holds nothing.
    expect(feed.watchers).toBe(4);
    expect(feed.stats().refused).toEqual({ token: 1, owner: 1, process: 1 });
    // A's stream ending frees a slot for A, its owner and the process alike.
    a1.close();
    expect(feed.watchers).toBe(3);
    expect(attempt(feed, A)).toBe('opened');
    const again = sub(A);
    expect([attempt(feed, A), attempt(feed, B), attempt(feed, C)]).toEqual([
      `resource_exhausted: ${TOKEN_FULL(2)}`,
      `resource_exhausted: ${OWNER_FULL(3)}`,
      `resource_exhausted: ${PROCESS_FULL(4)}`,
    ]);
    again.close();
    expect(feed.stats().refused).toEqual({ token: 2, owner: 2, process: 2 });
  });

  /**
   * With every cap at 1, one stream of A fills them all: A, B (A's owner) and C (the process)
   * are refused until it ends, and may open once it has, whichever way it ended.
   */
  const endings: [
    string,
    (ctx: {
      feed: EventFeed;
      rows: WatchedEvent[];
      log: { lost: boolean };
      revoke: () => void;
      stream: Subscription;
    }) => Promise<string>,
  ][] = [
    [
      'the client cancels',
      async ({ stream }) => {
        stream.close();
        return 'unavailable: watch closed';
      },
    ],
    [
      'it falls behind (buffer overflow)',
      async ({ feed, rows }) => {
        rows.push(ev(1, A.tokenId, 'fam_other'), ev(2, A.tokenId, 'fam_other'));
        feed.wake();
        await settle(feed);
        return 'resource_exhausted: watcher fell behind by more than 1 events; reconnect with after_sequence set to the last sequence received';
      },
    ],
    [
      'its bearer is revoked',
      async ({ feed, rows, revoke }) => {
        revoke();
        rows.push(ev(1, A.tokenId, A.familyId));
        feed.wake();
        await settle(feed);
        return 'unauthenticated: bearer token has been revoked; reconnect with a valid token';
      },
    ],
    [
      'the database is lost',
      async ({ feed, log }) => {
        log.lost = true;
        feed.wake();
        await settle(feed);
        return 'unavailable: database unavailable; reconnect with after_sequence set to the last sequence received';
      },
    ],
  ];

  it.each(endings)('gives the slot back when %s', async (_, end) => {
    const rows: WatchedEvent[] = [];
    const log = memoryLog(rows);
    let revoked = false;
    feed = new EventFeed(log, () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 1,
      checkCredential: async (tokenId) =>
        revoked && tokenId === A.tokenId ? { until: 0, problem: 'token has been revoked' } : { until: Infinity },
      streamCaps: { perToken: 1, perOwner: 1, perProcess: 1 },
    });
    await feed.start();
    const stream = feed.subscribe({ kind: 'tokens', tokenIds: [A.tokenId] }, [], A);
    await settle(feed);
    expect([attempt(feed, A), attempt(feed, B), attempt(feed, C)]).toEqual([
      `resource_exhausted: ${TOKEN_FULL(1)}`,
      `resource_exhausted: ${OWNER_FULL(1)}`,
      `resource_exhausted: ${PROCESS_FULL(1)}`,
    ]);
    const reason = await end({
      feed,
      rows,
      log,
      revoke: () => {
        revoked = true;
      },
      stream,
    });
    // The stream did end that way (after what it had queued), and every slot is free again.
    let last: unknown;
    for (let i = 0; i < 3 && last === undefined; i++)
      await stream.next().catch((e: RotorError) => (last = `${e.code}: ${e.message}`));
    expect(last).toBe(reason);
    expect(feed.watchers).toBe(0);
    log.lost = false;
    expect([attempt(feed, A), attempt(feed, B), attempt(feed, C)]).toEqual(['opened', 'opened', 'opened']);
  });

  it('gives every slot back at shutdown', async () => {
    feed = new EventFeed(memoryLog([]), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 1,
      checkCredential: async () => ({ until: Infinity }),
      streamCaps: { perToken: 1, perOwner: 1, perProcess: 1 },
    });
    await feed.start();
    const stream = feed.subscribe({ kind: 'tokens', tokenIds: [A.tokenId] }, [], A);
    feed.close();
    await expect(stream.next()).rejects.toThrow('server is shutting down');
    expect(feed.watchers).toBe(0);
    expect(attempt(feed, A)).toBe('unavailable: server is shutting down; reconnect to another replica');
  });

  it('defaults to 16 per token when no caps are given', async () => {
    feed = new EventFeed(memoryLog([]), () => 0, quiet, {
      pollIntervalMs: 60_000,
      heartbeatMs: 60_000,
      bufferEvents: 1,
      checkCredential: async () => ({ until: Infinity }),
    });
    await feed.start();
    for (let i = 0; i < 16; i++) feed.subscribe({ kind: 'tokens', tokenIds: [A.tokenId] }, [], A);
    expect(attempt(feed, A)).toBe(`resource_exhausted: ${TOKEN_FULL(16)}`);
  });
});
