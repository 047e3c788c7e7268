import type { Knex } from 'knex';
import type { Repositories, Store } from '../app/store-ports.js';
import { CachedTokenRepository } from './cached-token-repository.js';
import { type DatabaseConfig, type Engine, migrate, openDatabase } from './database.js';
import { KnexEventRepository } from './event-repository.js';
import { TokenCache, type TokenCacheOptions } from './token-cache.js';
import { KnexTokenRepository } from './token-repository.js';

/** Default cache settings: one second of cross-process staleness at most. */
export const DEFAULT_TOKEN_CACHE: TokenCacheOptions = { ttlMs: 1000, maxEntries: 10_000 };

/** The knex-backed Store: cached repositories on the pool, plus transactions. */
export class KnexStore implements Store {
  readonly tokens: CachedTokenRepository;
  readonly events: KnexEventRepository;
  private readonly cache: TokenCache;
  private readonly eventListeners = new Set<() => void>();

  constructor(
    readonly knex: Knex,
    readonly engine: Engine,
    cacheOptions: TokenCacheOptions = DEFAULT_TOKEN_CACHE,
  ) {
    this.cache = new TokenCache(cacheOptions);
    this.tokens = new CachedTokenRepository(new KnexTokenRepository(knex), this.cache, true);
    this.events = new KnexEventRepository(knex, (n) => this.eventsCommitted(n), true);
  }

  /**
   * Calls `listener` after events were committed by this process (after the transaction, never
   * inside it), so the WatchExpiry feed reads them at once instead of on its next poll.
   */
  onEventsCommitted(listener: () => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private eventsCommitted(count: number): void {
    if (count > 0) for (const l of this.eventListeners) l();
  }

  /**
   * Runs `work` in one transaction. Token rows it writes are invalidated in the cache when they
   * are written and again once the transaction has committed or rolled back.
   */
  async transaction<T>(work: (tx: Repositories) => Promise<T>): Promise<T> {
    const written: string[] = [];
    let appended = 0;
    try {
      const result = await this.knex.transaction((trx) =>
        work({
          tokens: new CachedTokenRepository(new KnexTokenRepository(trx), this.cache, false, (ids) => written.push(...ids)),
          events: new KnexEventRepository(trx, (n) => void (appended += n)),
        }),
      );
      this.eventsCommitted(appended);
      return result;
    } finally {
      if (written.length > 0) this.cache.invalidate(written);
    }
  }

  async close(): Promise<void> {
    await this.knex.destroy();
  }
}

/** Opens the database, applies migrations and returns the store. */
export async function openStore(config: DatabaseConfig, cache?: TokenCacheOptions): Promise<KnexStore> {
  const { knex, engine } = openDatabase(config);
  try {
    await migrate(knex);
  } catch (e) {
    await knex.destroy();
    throw e;
  }
  return new KnexStore(knex, engine, cache);
}
