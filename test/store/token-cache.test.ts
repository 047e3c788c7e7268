import { describe, expect, it } from 'vitest';
import { CachedTokenRepository } from '../../src/store/cached-token-repository.js';
import { TokenCache } from '../../src/store/token-cache.js';
import type { TokenRepository } from '../../src/app/store-ports.js';
import type { TokenRecord } from '../../src/domain/token.js';
import { tokenRecord } from '../domain/fixtures.js';

function record(id: string, digest: string): TokenRecord {
  return tokenRecord({ id, secretDigest: digest });
}

describe('TokenCache', () => {
  it('serves a row until its TTL ends', () => {
    let now = 1000;
    const cache = new TokenCache({ ttlMs: 100, maxEntries: 10, now: () => now });
    cache.put(record('tok_a', 'da'), cache.readStarted());
    expect(cache.getByDigest('da')?.id).toBe('tok_a');
    expect(cache.getById('tok_a')?.secretDigest).toBe('da');
    now += 99;
    expect(cache.getByDigest('da')).toBeDefined();
    now += 1;
    expect(cache.getByDigest('da')).toBeUndefined();
    expect(cache.getById('tok_a')).toBeUndefined();
  });

  it('does not cache what a read saw if a write happened while it was in flight', () => {
    const cache = new TokenCache({ ttlMs: 1000, maxEntries: 10 });
    const epoch = cache.readStarted();
    cache.invalidate(['tok_other']);
    cache.put(record('tok_a', 'da'), epoch);
    expect(cache.getByDigest('da')).toBeUndefined();
  });

  it('forgets invalidated rows and evicts the oldest past maxEntries', () => {
    const cache = new TokenCache({ ttlMs: 1000, maxEntries: 2 });
    cache.put(record('tok_a', 'da'), cache.readStarted());
    cache.put(record('tok_b', 'db'), cache.readStarted());
    cache.put(record('tok_c', 'dc'), cache.readStarted());
    expect([cache.getById('tok_a'), cache.getById('tok_b')?.id, cache.getById('tok_c')?.id]).toEqual([
      undefined,
      'tok_b',
      'tok_c',
    ]);
    cache.invalidate(['tok_b']);
    expect(cache.getByDigest('db')).toBeUndefined();
    expect(cache.getByDigest('dc')).toBeDefined();
  });

  it('lets go of rows past their TTL when new rows come in, not only when asked for them again', () => {
    let now = 1000;
    const cache = new TokenCache({ ttlMs: 100, maxEntries: 10_000, now: () => now });
    for (let i = 0; i < 50; i++) cache.put(record(`tok_${i}`, `d${i}`), cache.readStarted());
    expect(cache.stats().entries).toBe(50);
    now += 60;
    cache.put(record('tok_late', 'dlate'), cache.readStarted());
    expect(cache.stats().entries).toBe(51);
    // The first 50 are now past their TTL; the next row in drops them, the one put at +60 stays.
    now += 50;
    cache.put(record('tok_new', 'dnew'), cache.readStarted());
    expect(cache.stats().entries).toBe(2);
    expect(cache.getByDigest('dlate')?.id).toBe('tok_late');
    expect(cache.getById('tok_0')).toBeUndefined();
    // A row cached again moves to the end: it outlives rows stored after its first put.
    now += 40;
    cache.put(record('tok_late', 'dlate'), cache.readStarted());
    now += 70;
    cache.put(record('tok_last', 'dlast'), cache.readStarted());
    expect(cache.stats().entries).toBe(2);
    expect(cache.getByDigest('dnew')).toBeUndefined();
    expect(cache.getByDigest('dlate')?.id).toBe('tok_late');
  });

  it('is off with a TTL of zero', () => {
    const cache = new TokenCache({ ttlMs: 0, maxEntries: 10 });
    cache.put(record('tok_a', 'da'), cache.readStarted());
    expect(cache.getByDigest('da')).toBeUndefined();
  });
});

describe('CachedTokenRepository', () => {
  function fakeBase(rows: TokenRecord[]) {
    const calls: string[] = [];
    const base = {
      findByDigest: async (d: string) => {
        calls.push(`digest:${d}`);
        return rows.find((r) => r.secretDigest === d);
      },
      findById: async (id: string) => {
        calls.push(`id:${id}`);
        return rows.find((r) => r.id === id);
      },
      revoke: async (id: string) => {
        calls.push(`revoke:${id}`);
        return true;
      },
      touchLastUsed: async (t: TokenRecord) => void calls.push(`touch:${t.id}`),
    } as unknown as TokenRepository;
    return { base, calls };
  }

  it('reads once, then from the cache, and again after a write through it', async () => {
    const { base, calls } = fakeBase([record('tok_a', 'da')]);
    const repo = new CachedTokenRepository(base, new TokenCache({ ttlMs: 60_000, maxEntries: 10 }), true);
    await repo.findByDigest('da');
    await repo.findByDigest('da');
    await repo.findById('tok_a');
    expect(calls).toEqual(['digest:da']);
    await repo.revoke('tok_a', 'revoked', 0);
    await repo.findByDigest('da');
    expect(calls).toEqual(['digest:da', 'revoke:tok_a', 'digest:da']);
  });

  it('never caches unknown secrets and never reads through inside a transaction', async () => {
    const { base, calls } = fakeBase([record('tok_a', 'da')]);
    const cache = new TokenCache({ ttlMs: 60_000, maxEntries: 10 });
    const pool = new CachedTokenRepository(base, cache, true);
    await pool.findByDigest('unknown');
    await pool.findByDigest('unknown');
    const written: string[] = [];
    const tx = new CachedTokenRepository(base, cache, false, (ids) => written.push(...ids));
    await pool.findByDigest('da');
    await tx.findByDigest('da');
    await tx.revoke('tok_a', 'revoked', 0);
    expect(calls).toEqual(['digest:unknown', 'digest:unknown', 'digest:da', 'digest:da', 'revoke:tok_a']);
    expect(written).toEqual(['tok_a']);
    expect(cache.getByDigest('da')).toBeUndefined();
  });

  it('concurrent misses of one key share one read; a miss after a local write does not join a read that started before it', async () => {
    const rows = [record('tok_a', 'da')];
    const calls: string[] = [];
    const gates: (() => void)[] = [];
    const base = {
      findByDigest: (d: string) => {
        calls.push(`digest:${d}`);
        const row = rows.find((r) => r.secretDigest === d);
        return new Promise<TokenRecord | undefined>((resolve) => gates.push(() => resolve(row)));
      },
      findById: async (id: string) => {
        calls.push(`id:${id}`);
        return rows.find((r) => r.id === id);
      },
      revoke: async (id: string) => {
        calls.push(`revoke:${id}`);
        return true;
      },
    } as unknown as TokenRepository;
    const cache = new TokenCache({ ttlMs: 60_000, maxEntries: 10 });
    const repo = new CachedTokenRepository(base, cache, true);
    const first = [repo.findByDigest('da'), repo.findByDigest('da'), repo.findByDigest('da')];
    expect(calls).toEqual(['digest:da']);
    // A write through this process: later misses must not take the read that started before it.
    await repo.revoke('tok_a', 'revoked', 0);
    const after = repo.findByDigest('da');
    expect(calls).toEqual(['digest:da', 'revoke:tok_a', 'digest:da']);
    for (const open of gates) open();
    const got = await Promise.all([...first, after]);
    expect(got.map((r) => r?.id)).toEqual(['tok_a', 'tok_a', 'tok_a', 'tok_a']);
    // The read from before the write was not cached; the one after it was.
    await repo.findByDigest('da');
    expect(calls).toEqual(['digest:da', 'revoke:tok_a', 'digest:da']);
    // Unknown secrets are shared while in flight too, and never cached.
    gates.length = 0;
    const unknown = [repo.findByDigest('zz'), repo.findByDigest('zz')];
    for (const open of gates) open();
    expect(await Promise.all(unknown)).toEqual([undefined, undefined]);
    expect(calls.filter((c) => c === 'digest:zz')).toHaveLength(1);
    void repo.findByDigest('zz');
    expect(calls.filter((c) => c === 'digest:zz')).toHaveLength(2);
  });

  it('skips the last-use write while the known last use is recent', async () => {
    const { base, calls } = fakeBase([]);
    const repo = new CachedTokenRepository(base, new TokenCache({ ttlMs: 60_000, maxEntries: 10 }), true);
    await repo.touchLastUsed(tokenRecord({ id: 'tok_a', lastUsedAt: 100_000 }), 130_000);
    await repo.touchLastUsed(tokenRecord({ id: 'tok_b', lastUsedAt: 100_000 }), 170_000);
    await repo.touchLastUsed(tokenRecord({ id: 'tok_c', lastUsedAt: null }), 170_000);
    expect(calls).toEqual(['touch:tok_b', 'touch:tok_c']);
  });
});
