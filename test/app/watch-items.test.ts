/**
 * watchEvents' iterator (src/app/watch.ts) given up at awkward moments: a stream must never stay
 * in the live feed after its consumer returned it, also when return() came while the opening
 * (log reads before and after joining the feed) was still running; and a failed opening keeps
 * failing with its own error.
 */
import { describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app/context.js';
import { watchEvents, type WatchPlan } from '../../src/app/watch.js';
import type { LiveFeed } from '../../src/app/watch-ports.js';
import { Subscription } from '../../src/expiry/subscription.js';

/** A feed that counts its members, and an app whose log reads wait for the test. */
function setup() {
  const members = new Set<Subscription>();
  const feed: LiveFeed = {
    subscribe: (selection, thresholds, credential) => {
      const s = new Subscription(selection, credential.tokenId, new Set(thresholds), 0, 10, (x) => members.delete(x));
      members.add(s);
      return s;
    },
  };
  let release: () => void = () => {};
  let failWith: Error | undefined;
  const reads: string[] = [];
  const app = {
    now: () => 0,
    store: {
      events: {
        latestSequence: async () => {
          reads.push('latest');
          await new Promise<void>((r) => (release = r));
          if (failWith) throw failWith;
          return 0;
        },
        forSelection: async () => [],
      },
      tokens: { findById: async () => undefined, list: async () => [] },
    },
  } as unknown as AppContext;
  const plan = (p: Partial<WatchPlan> = {}): WatchPlan => ({
    selection: { kind: 'tokens', tokenIds: ['tok_a1'] },
    credential: { tokenId: 'tok_me', familyId: 'fam_me', ownerId: 'me' },
    thresholdsSeconds: [],
    afterSequence: undefined,
    includeSnapshot: false,
    ...p,
  });
  return { members, feed, app, plan, release: () => release(), fail: (e: Error) => (failWith = e), reads };
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('watchEvents iterator', () => {
  it('return() while the opening reads the log (before it joined the feed): the stream leaves the feed once it joins', async () => {
    const t = setup();
    const w = watchEvents(t.app, { feed: t.feed, thresholdsSeconds: [] }, t.plan());
    const first = w.next();
    await turns();
    expect(t.reads).toEqual(['latest']);
    const returned = w.return();
    t.release();
    expect(await first).toEqual({ done: true, value: undefined });
    await returned;
    expect(t.members.size).toBe(0);
    expect(await w.next()).toEqual({ done: true, value: undefined });
  });

  it('return() while a snapshot step runs (after it joined the feed): the stream leaves the feed', async () => {
    const t = setup();
    const w = watchEvents(t.app, { feed: t.feed, thresholdsSeconds: [] }, t.plan({ includeSnapshot: true }));
    const first = w.next();
    await turns();
    expect(t.members.size).toBe(1);
    const returned = w.return();
    t.release();
    await first;
    await returned;
    expect(t.members.size).toBe(0);
  });

  it('a failed opening leaves the feed and every later next() rejects with its error', async () => {
    const t = setup();
    const w = watchEvents(t.app, { feed: t.feed, thresholdsSeconds: [] }, t.plan({ includeSnapshot: true }));
    const first = w.next();
    await turns();
    t.fail(new Error('database unavailable'));
    t.release();
    await expect(first).rejects.toThrow('database unavailable');
    expect(t.members.size).toBe(0);
    await expect(w.next()).rejects.toThrow('database unavailable');
  });

  it("live: next() is the subscription's; return() leaves the feed and settles the waiting next()", async () => {
    const t = setup();
    const w = watchEvents(t.app, { feed: t.feed, thresholdsSeconds: [] }, t.plan());
    const first = w.next();
    await turns();
    t.release();
    await turns();
    expect(t.members.size).toBe(1);
    const [sub] = [...t.members];
    sub!.offer({
      kind: 'event',
      event: {
        sequence: 1,
        type: 'revoked',
        tokenId: 'tok_a1',
        familyId: 'fam_f1',
        ownerId: 'web',
        successorId: null,
        actor: 'x',
        peer: null,
        reason: null,
        occurredAt: 0,
        expiresAt: 0,
        thresholdSeconds: null,
      },
    });
    expect(await first).toMatchObject({ done: false, value: { kind: 'event', event: { sequence: 1 } } });
    const waiting = w.next();
    await w.return();
    expect(t.members.size).toBe(0);
    await expect(waiting).rejects.toThrow('watch closed');
  });
});
