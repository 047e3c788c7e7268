import type { Knex } from 'knex';
import type { RateCounter } from '../app/brakes.js';
import { hitWindow, type WindowCount } from '../domain/rate-limits.js';

/** Hits between two sweeps of ended windows out of the in-memory counter. */
const SWEEP_EVERY = 1000;

/**
 * The brakes' counters in this process's memory: SQLite serves one process, so there is nobody
 * to share them with. Ended windows are swept out every thousand hits.
 */
export class MemoryRateCounter implements RateCounter {
  private readonly windows = new Map<string, WindowCount>();
  private hits = 0;

  async hit(key: string, windowMs: number, now: number): Promise<WindowCount> {
    if (++this.hits % SWEEP_EVERY === 0) {
      for (const [k, w] of this.windows) if (w.resetAt <= now) this.windows.delete(k);
    }
    const w = hitWindow(this.windows.get(key), now, windowMs);
    this.windows.set(key, w);
    return w;
  }

  async close(): Promise<void> {}
}

/**
 * One hit, atomically, in one statement: a new key or an ended window starts at 1, anything else
 * counts up (the rule of `hitWindow`). Times are the server's clock, passed in, so every replica
 * judges windows by the same numbers it writes.
 */
const HIT_SQL = `insert into rate_limit_counters (key, count, reset_at) values (?, 1, ?)
on conflict (key) do update set
  count = case when rate_limit_counters.reset_at <= ? then 1 else rate_limit_counters.count + 1 end,
  reset_at = case when rate_limit_counters.reset_at <= ? then excluded.reset_at else rate_limit_counters.reset_at end
returning count, reset_at`;

/** How often a replica deletes ended windows from the shared table. */
const PURGE_INTERVAL_MS = 60_000;

/**
 * The brakes' counters in PostgreSQL (table `rate_limit_counters`, migration
 * 20261208_031_brakes), shared by every replica on the database: each hit is one upsert on the
 * pool, under the statement timeout like any query. Errors are thrown as they come; the brakes
 * fail open on them (src/app/brakes.ts). Ended windows are deleted once a minute.
 */
export class PostgresRateCounter implements RateCounter {
  private readonly purgeTimer: NodeJS.Timeout;

  constructor(
    private readonly knex: Knex,
    now: () => number,
  ) {
    this.purgeTimer = setInterval(() => {
      void this.knex('rate_limit_counters')
        .where('reset_at', '<=', now())
        .delete()
        .catch(() => undefined);
    }, PURGE_INTERVAL_MS).unref();
  }

  async hit(key: string, windowMs: number, now: number): Promise<WindowCount> {
    const r = await this.knex.raw<{ rows: { count: number | string; reset_at: number | string }[] }>(HIT_SQL, [
      key,
      now + windowMs,
      now,
      now,
    ]);
    const row = r.rows[0]!;
    return { count: Number(row.count), resetAt: Number(row.reset_at) };
  }

  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
  }
}
