/**
 * Fan-out mechanics of one event reaching many watchers (src/expiry/subscription.ts): waiting
 * watchers are woken in slices over several event-loop turns, every one of them still gets the
 * event, in order; watchers due a heartbeat in the same tick share one heartbeat item (so the
 * gRPC adapter encodes it once).
 */
import { describe, expect, it } from 'vitest';
import { expiryEventToPb } from '../../src/api/expiry-service-impl.js';
import type { WatchedEvent } from '../../src/domain/token-event.js';
import { Subscription } from '../../src/expiry/subscription.js';

/** The next item of a watcher (rejects when it ended). */
const take = (s: Subscription) => s.next().then((r) => r.value);

function ev(sequence: number): WatchedEvent {
  return {
    sequence,
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
  };
}

const sub = () =>
  new Subscription({ kind: 'tokens', tokenIds: ['tok_a1'] }, 'tok_watcher', new Set([3600]), 0, 10, () => {});

describe('Subscription fan-out', () => {
  it('wakes 1,000 waiting watchers over several event-loop turns, each gets both events in order', async () => {
    const subs = Array.from({ length: 1000 }, sub);
    const got: number[][] = subs.map(() => []);
    const firstTurn: number[] = [];
    const readers = subs.map(async (s, i) => {
      for (let n = 0; n < 2; n++) {
        const item = await take(s);
        if (item.kind === 'event') got[i]!.push(item.event.sequence);
      }
    });
    await new Promise((r) => setImmediate(r));
    const e1 = { kind: 'event', event: ev(1) } as const;
    const e2 = { kind: 'event', event: ev(2) } as const;
    for (const s of subs) s.offer(e1);
    for (const s of subs) s.offer(e2);
    // Nothing is woken synchronously; the first turn wakes one slice only.
    expect(got.filter((g) => g.length > 0)).toHaveLength(0);
    await new Promise<void>((r) =>
      setImmediate(() => {
        firstTurn.push(got.filter((g) => g.length > 0).length);
        r();
      }),
    );
    await Promise.all(readers);
    expect(firstTurn[0]).toBeGreaterThan(0);
    expect(firstTurn[0]).toBeLessThan(1000);
    expect(got.every((g) => g.length === 2 && g[0] === 1 && g[1] === 2)).toBe(true);
  });

  it('a watcher that fails while its wake-up is queued rejects its next() at once', async () => {
    const s = sub();
    const taken = take(s);
    await new Promise((r) => setImmediate(r));
    s.offer({ kind: 'event', event: ev(1) });
    s.close();
    // The queued item was dropped with the failure: next() rejects rather than returning it.
    await expect(taken).rejects.toThrow('watch closed');
  });

  it('watchers due a heartbeat in the same tick share one item and one wire message', async () => {
    const [a, b] = [sub(), sub()];
    a.heartbeat(7, 1000);
    b.heartbeat(7, 1000);
    const [ha, hb] = [await take(a), await take(b)];
    expect(ha).toBe(hb);
    expect(expiryEventToPb(ha)).toBe(expiryEventToPb(hb));
    // A later tick gets its own item.
    const c = sub();
    c.heartbeat(7, 2000);
    const hc = await take(c);
    expect(hc).not.toBe(ha);
    expect(hc).toMatchObject({ kind: 'heartbeat', sequence: 7, at: 2000 });
  });
});
