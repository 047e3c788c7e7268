import { describe, expect, it, vi } from 'vitest';
import { RecentMap } from '../../src/domain/recent-map.js';

describe('RecentMap', () => {
  it('keeps at most maxEntries, the oldest leaving first; setting a key again makes it the newest', () => {
    const m = new RecentMap<string, number>({ maxEntries: 3 });
    for (const k of ['a', 'b', 'c']) m.set(k, k.charCodeAt(0));
    m.set('a', 1);
    m.set('d', 4);
    expect(m.size).toBe(3);
    expect(m.get('b')).toBeUndefined();
    expect([m.get('a'), m.get('c'), m.get('d')]).toEqual([1, 99, 4]);
  });

  it('with a TTL, forgets an entry once it is that old: on reading it, and on any later set', () => {
    let now = 0;
    const m = new RecentMap<string, string>({ maxEntries: 100, ttlMs: 1000, now: () => now });
    m.set('old', 'x');
    now = 600;
    m.set('young', 'y');
    now = 999;
    expect(m.get('old')).toBe('x');
    now = 1000;
    expect(m.get('old')).toBeUndefined();
    expect(m.size).toBe(1);
    now = 1600;
    m.set('new', 'z');
    expect(m.size).toBe(1);
    expect(m.get('young')).toBeUndefined();
    expect(m.get('new')).toBe('z');
  });

  it('with a TTL, drops expired entries on its own once nothing reads or sets it', async () => {
    // Expiry follows the map's clock (here a hand-moved one); the sweep runs on real timers.
    let now = 0;
    const m = new RecentMap<string, string>({ maxEntries: 100, ttlMs: 20, now: () => now });
    m.set('a', 'x');
    now = 10;
    m.set('b', 'y');
    now = 25;
    // 'a' is past its time and goes without a read; 'b' is not yet, and stays.
    await vi.waitFor(() => expect(m.size).toBe(1), { timeout: 5000, interval: 10 });
    await new Promise((r) => setTimeout(r, 60));
    expect(m.size).toBe(1);
    now = 40;
    await vi.waitFor(() => expect(m.size).toBe(0), { timeout: 5000, interval: 10 });
    // And it starts again on the next set.
    m.set('c', 'z');
    now = 70;
    await vi.waitFor(() => expect(m.size).toBe(0), { timeout: 5000, interval: 10 });
  });
});
