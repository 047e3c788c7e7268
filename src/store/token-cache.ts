import type { TokenRecord } from '../domain/token.js';

/** Settings of the in-process token cache. */
export interface TokenCacheOptions {
  /** How long a cached row is trusted; bounds staleness across processes. 0 disables the cache. */
  ttlMs: number;
  maxEntries: number;
  now?: () => number;
}

export interface TokenCacheStats {
  hits: number;
  misses: number;
  entries: number;
}

interface Entry {
  record: TokenRecord;
  storedAt: number;
}

/**
 * An in-process cache of token rows by secret digest and by id, so the hot path (authenticate,
 * introspect) does not queue on the database for every call.
 *
 * Correctness: every token write made through this process invalidates the row at the write and
 * again after its transaction settles; a global epoch stops a read that was already in flight
 * from caching what it saw. Writes by another process become visible within `ttlMs` at the
 * latest; on PostgreSQL usually much sooner, because the store drops the rows another replica's
 * events name as soon as their NOTIFY arrives (KnexStore.followRemoteWrites). Only rows
 * that exist are cached, so unknown secrets cannot fill it; past `maxEntries` the oldest go first.
 */
export class TokenCache {
  private readonly byDigest = new Map<string, Entry>();
  private readonly digestById = new Map<string, string>();
  private epoch = 0;
  private readonly clock: () => number;
  private hits = 0;
  private misses = 0;

  constructor(private readonly options: TokenCacheOptions) {
    this.clock = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.options.ttlMs > 0;
  }

  /** Marks the start of a read; pass the value to `put`. */
  readStarted(): number {
    return this.epoch;
  }

  getByDigest(digest: string): TokenRecord | undefined {
    const hit = this.peekByDigest(digest);
    if (hit !== undefined) return hit;
    this.misses++;
    // Present but past its TTL: forgotten now.
    const e = this.byDigest.get(digest);
    if (e !== undefined) this.drop(e.record.id);
    return undefined;
  }

  /**
   * getByDigest for a caller that reads through `getByDigest` (or the database) on a miss: counts
   * a hit, leaves the miss (and dropping an expired row) to that second lookup, so each lookup is
   * counted once.
   */
  peekByDigest(digest: string): TokenRecord | undefined {
    const e = this.byDigest.get(digest);
    if (e === undefined || this.clock() - e.storedAt >= this.options.ttlMs) return undefined;
    this.hits++;
    return e.record;
  }

  /** peekByDigest by id. */
  peekById(id: string): TokenRecord | undefined {
    const digest = this.digestById.get(id);
    return digest === undefined ? undefined : this.peekByDigest(digest);
  }

  /** Lookups answered from the cache and not, since it was created, and the rows it holds. */
  stats(): TokenCacheStats {
    return { hits: this.hits, misses: this.misses, entries: this.byDigest.size };
  }

  getById(id: string): TokenRecord | undefined {
    const digest = this.digestById.get(id);
    if (digest !== undefined) return this.getByDigest(digest);
    this.misses++;
    return undefined;
  }

  /** Caches a row read at `epoch`, unless a write happened since the read started. */
  put(record: TokenRecord, epoch: number): void {
    if (!this.enabled || epoch !== this.epoch) return;
    const now = this.clock();
    this.dropExpired(now);
    if (!this.byDigest.has(record.secretDigest) && this.byDigest.size >= this.options.maxEntries) {
      const oldest = this.byDigest.values().next().value;
      if (oldest) this.drop(oldest.record.id);
    }
    this.drop(record.id);
    this.byDigest.set(record.secretDigest, { record, storedAt: now });
    this.digestById.set(record.id, record.secretDigest);
  }

  /** Replaces a cached row's last use without counting as a state change. */
  noteUse(id: string, now: number): void {
    const digest = this.digestById.get(id);
    const e = digest === undefined ? undefined : this.byDigest.get(digest);
    if (e) e.record = { ...e.record, lastUsedAt: now };
  }

  /** Forgets rows that a write changed (or may have changed). */
  invalidate(ids: Iterable<string>): void {
    this.epoch++;
    for (const id of ids) this.drop(id);
  }

  /** Forgets every row (another process's writes may have been missed). */
  clear(): void {
    this.epoch++;
    this.byDigest.clear();
    this.digestById.clear();
  }

  /**
   * Forgets the rows older than the TTL, oldest first: `put` re-inserts a row at the end, so the
   * map runs from the oldest row to the newest and the loop stops at the first fresh one (each row
   * leaves once: constant time per `put` on average). Without it a row nobody asks for again stayed
   * until `maxEntries` pushed it out: after a burst of new tokens, up to 10,000 dead rows (about
   * 15 MB) that every full GC marked (bench/README.md, "Token cache").
   */
  private dropExpired(now: number): void {
    for (const e of this.byDigest.values()) {
      if (now - e.storedAt < this.options.ttlMs) return;
      this.drop(e.record.id);
    }
  }

  private drop(id: string): void {
    const digest = this.digestById.get(id);
    if (digest === undefined) return;
    this.digestById.delete(id);
    this.byDigest.delete(digest);
  }
}
