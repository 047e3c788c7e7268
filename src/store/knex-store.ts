import type { Knex } from 'knex';
import type { Repositories, RotationCommit, Store, TransactionRunner } from '../app/store-ports.js';
import { DirectRotationWriter, type CommitOutcome } from './direct-rotation.js';
import { CachedTokenRepository } from './cached-token-repository.js';
import type { RotorError } from '../domain/errors.js';
import { asStoreError, guardRepository } from './database-errors.js';
import { type DatabaseConfig, type Engine, migrate, openDatabase } from './database.js';
import { KnexEventRepository, type EventKind } from './event-repository.js';
import { familyLockSql, familyLocksSql } from './family-lock.js';
import { listenForEvents, type EventListener, type EventWake } from './pg-notify.js';
import { TokenCache, type TokenCacheOptions, type TokenCacheStats } from './token-cache.js';
import { KnexTokenRepository } from './token-repository.js';

/** Default cache settings: one second of cross-process staleness at most. */
const DEFAULT_TOKEN_CACHE: TokenCacheOptions = { ttlMs: 1000, maxEntries: 10_000 };

/** What GET /metrics reads of the store (src/http/metrics.ts). */
export interface StoreStats {
  /** Events committed by this process, by type and reason; every pair the code writes is listed from 0. */
  eventsCommitted: { type: string; reason: string | null; count: number }[];
  /** Commits that revoked a family for token reuse (one per detection, however many members). */
  reuseDetected: number;
  /** Calls failed as `unavailable` (database unreachable, statement or pool timeout). */
  unavailable: number;
  cache: TokenCacheStats;
}

/**
 * The (type, reason) pairs the use cases write, exported from 0 so that a rate over the first
 * event of a kind is not lost (Prometheus needs a sample before the increase).
 */
const EVENT_KINDS: readonly EventKind[] = [
  { type: 'created', reason: null },
  { type: 'created', reason: 'rotated' },
  { type: 'rotated', reason: 'rotated' },
  { type: 'replayed', reason: null },
  { type: 'retry_refused', reason: 'racing_rotation' },
  { type: 'retry_refused', reason: 'wrong_idempotency_key' },
  { type: 'revoked', reason: 'revoked' },
  { type: 'revoked', reason: 'overlap_ended' },
  { type: 'revoked', reason: 'recovered' },
  { type: 'family_revoked', reason: 'family_revoked' },
  { type: 'family_revoked', reason: 'reuse_detected' },
  { type: 'family_revoked', reason: 'cascade' },
  { type: 'predecessor_retired', reason: null },
  { type: 'superseded', reason: 'superseded' },
  { type: 'expiring_soon', reason: null },
  { type: 'expired', reason: null },
];

/**
 * The knex-backed Store: cached repositories on the pool, plus transactions. Every database
 * failure that means "the database is not there" leaves it as the domain's `unavailable` error
 * (src/store/database-errors.ts), from the pool repositories and from transactions alike.
 */
export class KnexStore implements Store {
  readonly tokens: CachedTokenRepository;
  readonly events: KnexEventRepository;
  private readonly cache: TokenCache;
  /** Called with each `unavailable` error the store raises (the server logs them). */
  onUnavailable: (e: RotorError) => void = () => undefined;
  private listener: EventListener | undefined;
  private readonly eventListeners = new Set<() => void>();
  /** Events this process committed, by type and reason, since the store opened (for /metrics). */
  private readonly committed = new Map(
    EVENT_KINDS.map((e) => [`${e.type}/${e.reason ?? ''}`, { type: e.type, reason: e.reason, count: 0 }]),
  );
  private reuseDetected = 0;
  /** `unavailable` errors raised since the store opened (for /metrics). */
  private unavailableCount = 0;
  private readonly direct: DirectRotationWriter;

  constructor(
    readonly knex: Knex,
    readonly engine: Engine,
    cacheOptions: TokenCacheOptions = DEFAULT_TOKEN_CACHE,
  ) {
    this.cache = new TokenCache(cacheOptions);
    const report = (e: RotorError) => this.reportUnavailable(e);
    this.tokens = new CachedTokenRepository(guardRepository(new KnexTokenRepository(knex), report), this.cache, true);
    this.events = guardRepository(
      new KnexEventRepository(knex, (events) => this.eventsCommitted(events), true),
      report,
    );
    this.direct = new DirectRotationWriter(knex, engine);
  }

  /**
   * Wraps another repository on this store's database (signing keys, the workload replay cache)
   * so its driver failures leave as `unavailable` too, reported like the store's own.
   */
  guard<T extends object>(repo: T): T {
    return guardRepository(repo, (e) => this.reportUnavailable(e));
  }

  /** Counts of what the store did since it opened, read by GET /metrics. */
  stats(): StoreStats {
    return {
      eventsCommitted: [...this.committed.values()],
      reuseDetected: this.reuseDetected,
      unavailable: this.unavailableCount,
      cache: this.cache.stats(),
    };
  }

  private reportUnavailable(e: RotorError): void {
    this.unavailableCount++;
    this.onUnavailable(e);
  }

  /**
   * Calls `listener` after events were committed by this process (after the transaction, never
   * inside it), so the WatchExpiry feed reads them at once instead of on its next poll.
   */
  onEventsCommitted(listener: () => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private eventsCommitted(events: readonly EventKind[]): void {
    if (events.length === 0) return;
    let reuse = false;
    for (const e of events) {
      const key = `${e.type}/${e.reason ?? ''}`;
      const c = this.committed.get(key);
      if (c) c.count++;
      else this.committed.set(key, { type: e.type, reason: e.reason, count: 1 });
      if (e.type === 'family_revoked' && e.reason === 'reuse_detected') reuse = true;
    }
    if (reuse) this.reuseDetected++;
    for (const l of this.eventListeners) l();
  }

  /**
   * Runs `work` in one transaction. Token rows it writes are invalidated in the cache when they
   * are written and again once the transaction has committed or rolled back. With `lock`, the
   * transaction first takes a transaction-level lock of that name, so transactions with the same
   * lock run one after another: on PostgreSQL an advisory lock (`pg_advisory_xact_lock`), needed
   * because READ COMMITTED lets two transactions both see "nothing there" and both insert; on
   * SQLite writers are serialised anyway (one connection per process, and another process's
   * stale write fails with SQLITE_BUSY), so nothing is taken. With `family`, it first takes that
   * family's lock (src/store/family-lock.ts; PostgreSQL only, for the same reason).
   */
  async transaction<T>(
    work: (tx: Repositories) => Promise<T>,
    options: { lock?: string; family?: string; families?: readonly string[] } = {},
  ): Promise<T> {
    const written: string[] = [];
    const appended: EventKind[] = [];
    try {
      const result = await this.knex.transaction(async (trx) => {
        if (options.lock !== undefined && this.engine === 'postgres') {
          await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`rotor:${options.lock}`]);
        }
        if (options.family !== undefined && this.engine === 'postgres') await trx.raw(familyLockSql(options.family));
        if (options.families !== undefined && options.families.length > 0 && this.engine === 'postgres')
          await trx.raw(familyLocksSql(options.families));
        return work({
          tokens: new CachedTokenRepository(new KnexTokenRepository(trx), this.cache, false, (ids) =>
            written.push(...ids),
          ),
          events: new KnexEventRepository(trx, (events) => {
            for (const e of events) appended.push(e);
          }),
        });
      });
      this.eventsCommitted(appended);
      return result;
    } catch (e) {
      const mapped = asStoreError(e);
      if (mapped !== e) this.reportUnavailable(mapped as RotorError);
      throw mapped;
    } finally {
      if (written.length > 0) this.cache.invalidate(written);
    }
  }

  /**
   * A rotation's writes on the driver directly (src/store/direct-rotation.ts, the same SQL as the
   * repositories), with what `transaction` does around them: the two token rows are dropped from
   * the cache, the live feed is woken after the commit, and a lost database leaves as `unavailable`.
   */
  async commitRotation(commit: RotationCommit): Promise<boolean> {
    let outcome: CommitOutcome;
    try {
      outcome = await this.direct.commit(commit);
    } catch (e) {
      const mapped = asStoreError(e);
      if (mapped !== e) this.reportUnavailable(mapped as RotorError);
      throw mapped;
    } finally {
      this.cache.invalidate([commit.currentId, commit.successor.id]);
    }
    this.eventsCommitted(outcome.events);
    return outcome.won;
  }

  /**
   * PostgreSQL: `pg_try_advisory_lock` on a connection of its own outside the pool, held while
   * `work` runs and released by closing that connection (so a lock can never outlive the pass,
   * even when the unlock itself would fail); `work`'s transactions run on pooled connections, so
   * a pool of one still serves. Should the lock's connection break mid-way, another replica may
   * start a pass while this one finishes its batch: deletes stay exact (each row is deleted, and
   * counted, by the one statement that removed it) and the event mark only moves forward.
   */
  async runExclusive<T>(
    name: string,
    work: (transaction: TransactionRunner) => Promise<T>,
  ): Promise<{ ran: true; value: T } | { ran: false }> {
    const transaction: TransactionRunner = (w) => this.transaction(w);
    if (this.engine !== 'postgres') return { ran: true, value: await work(transaction) };
    const client = this.knex.client as {
      acquireRawConnection(): Promise<RawPgClient>;
      destroyRawConnection(c: RawPgClient): Promise<void>;
    };
    let conn: RawPgClient;
    try {
      conn = await client.acquireRawConnection();
    } catch (e) {
      throw this.storeError(e);
    }
    try {
      let locked: boolean;
      try {
        const r = await conn.query('select pg_try_advisory_lock(hashtext($1)) as locked', [`rotor:${name}`]);
        locked = r.rows[0]?.locked === true;
      } catch (e) {
        throw this.storeError(e);
      }
      if (!locked) return { ran: false };
      return { ran: true, value: await work(transaction) };
    } finally {
      await client.destroyRawConnection(conn).catch(() => undefined);
    }
  }

  private storeError(e: unknown): unknown {
    const mapped = asStoreError(e);
    if (mapped !== e) this.reportUnavailable(mapped as RotorError);
    return mapped;
  }

  /** A trivial round trip (GET /healthz); fails with `unavailable` when the database is gone. */
  async ping(): Promise<void> {
    try {
      await this.knex.raw('select 1');
    } catch (e) {
      throw asStoreError(e);
    }
  }

  /**
   * Whether any token row or JWT signing key exists: data keyed by the server secret, which a
   * weak secret may then not be refused for (src/runtime/weak-secret-gate.ts).
   */
  async holdsSecretKeyedData(): Promise<boolean> {
    try {
      if ((await this.knex('tokens').first('id')) !== undefined) return true;
      return (await this.knex('signing_keys').first('kid')) !== undefined;
    } catch (e) {
      throw asStoreError(e);
    }
  }

  /**
   * PostgreSQL: LISTENs for event inserts of every process (this one's too) on one dedicated
   * connection. With the cache on, it drops the token rows they name from the cache at once (the
   * whole cache after a reconnect, when notifications may have been missed);
   * `ROTOR_TOKEN_CACHE_TTL_MS` stays the bound for a notification that is late or lost. Every
   * notification, and every reconnect (as `undefined`), is also passed to `onEvents`: the
   * WatchExpiry feed reads the log then, which stays the source of truth, so a lost notification
   * only delays an event until the feed's poll. `onError` hears of connection failures (the
   * listener reconnects by itself). No-op on SQLite, or when called again.
   */
  followRemoteWrites(
    url: string,
    onError: (e: Error) => void,
    onEvents: (wake: EventWake | undefined) => void = () => undefined,
  ): void {
    if (this.engine !== 'postgres' || this.listener) return;
    this.listener = listenForEvents({
      url,
      onWake: (wake) => {
        if (this.cache.enabled) {
          if (wake === undefined || wake.tokenIds === 'all') this.cache.clear();
          else this.cache.invalidate(wake.tokenIds);
        }
        onEvents(wake);
      },
      onError,
    });
  }

  async close(): Promise<void> {
    await this.listener?.close();
    await this.direct.close();
    await this.knex.destroy();
  }
}

/** The part of a raw pg Client `runExclusive` uses; closing it releases its session lock. */
interface RawPgClient {
  query(sql: string, values: unknown[]): Promise<{ rows: { locked?: unknown }[] }>;
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
