import { describe, expect, it } from 'vitest';
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
});
