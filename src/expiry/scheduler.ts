import type { Logger } from '../app/logger-port.js';
import type { EventRepository } from '../app/store-ports.js';
import type { Clock } from '../domain/ports.js';
import { PeriodicPass } from './periodic-pass.js';

/** Settings of the expiry scheduler (README: ROTOR_EXPIRY_*). */
export interface ExpirySchedulerOptions {
  /** Thresholds in seconds, largest first. */
  thresholdsSeconds: readonly number[];
  /** Time between passes; 0 runs no timer (passes only through runOnce()). */
  intervalMs: number;
  /** Rows one statement writes at most. */
  batchSize?: number;
  /** Statements one pass runs per threshold at most; the next pass continues. */
  maxBatchesPerPass?: number;
}

/** What one pass wrote. */
export interface PassResult {
  expiringSoon: number;
  expired: number;
}

/**
 * How far back a pass re-reads behind its previous one, so a token committed while the previous
 * pass ran is not skipped. Re-reading is safe: writes are insert-if-absent on the unique key.
 */
const OVERLAP_MS = 60_000;

/**
 * Writes EXPIRING_SOON (one per token and threshold) and EXPIRED (one per token) into the event
 * log, exactly once across restarts and replicas: each row has a unique key and is inserted only
 * if absent (src/store/event-repository.ts). Due tokens are found through the index on
 * (revoked_at, expires_at), so a pass reads the expiry range that became due since the previous
 * pass (plus OVERLAP_MS), not the table: after a pass up to `now + T`, the next one for threshold
 * T starts at that mark. The first pass of a process covers `(now, now + T]` for each threshold
 * and, for EXPIRED, `(now - largest threshold, now]` (expiries missed while no scheduler ran).
 * Rotated and revoked tokens are never selected, so their pending thresholds are moot.
 */
export class ExpiryScheduler {
  private readonly thresholdMarks = new Map<number, number>();
  private expiredMark: number | undefined;
  private readonly loop: PeriodicPass<PassResult>;
  private passes = 0;
  private failures = 0;
  private readonly batchSize: number;
  private readonly maxBatches: number;

  constructor(
    private readonly events: EventRepository,
    private readonly now: Clock,
    private readonly log: Logger,
    private readonly options: ExpirySchedulerOptions,
  ) {
    this.batchSize = options.batchSize ?? 500;
    this.maxBatches = options.maxBatchesPerPass ?? 20;
    this.loop = new PeriodicPass(
      () =>
        this.pass().then(
          (r) => {
            this.passes++;
            return r;
          },
          (e: unknown) => {
            this.failures++;
            throw e;
          },
        ),
      (e) => this.log.warn('expiry scan failed', { error: e instanceof Error ? e.message : String(e) }),
    );
  }

  /** For GET /metrics: passes finished and passes failed since the process started. */
  stats(): { passes: number; failures: number } {
    return { passes: this.passes, failures: this.failures };
  }

  /** Starts the periodic passes (the first one right away). */
  start(): void {
    if (this.options.intervalMs === 0) return;
    this.loop.start(0, this.options.intervalMs);
  }

  /** Stops the timer and waits for a pass in progress. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs one pass now (tests move the clock and call this instead of waiting). Passes never overlap. */
  runOnce(): Promise<PassResult> {
    return this.loop.runOnce();
  }

  private async pass(): Promise<PassResult> {
    const now = this.now();
    let expiringSoon = 0;
    for (const t of this.options.thresholdsSeconds) {
      const to = now + t * 1000;
      const mark = this.thresholdMarks.get(t);
      const from = mark === undefined ? now : Math.max(now, mark - OVERLAP_MS);
      const r = await this.drain((limit) =>
        this.events.appendExpiringSoon({ thresholdSeconds: t, from, to, now, limit }),
      );
      expiringSoon += r.written;
      if (r.complete) this.thresholdMarks.set(t, to);
    }
    const largest = Math.max(0, ...this.options.thresholdsSeconds) * 1000;
    const from = this.expiredMark === undefined ? now - largest : Math.min(now, this.expiredMark - OVERLAP_MS);
    const r = await this.drain((limit) => this.events.appendExpired({ from, to: now, limit }));
    if (r.complete) this.expiredMark = now;
    if (expiringSoon + r.written > 0)
      this.log.info('expiry events written', { expiring_soon: expiringSoon, expired: r.written });
    return { expiringSoon, expired: r.written };
  }

  /**
   * Repeats a bounded insert until one writes nothing, or the pass budget ends. Not "until a batch
   * is short": with several schedulers on PostgreSQL a batch is also short when another
   * scheduler's concurrent insert won some of its rows (ON CONFLICT DO NOTHING), while due rows
   * remain past it; stopping then moved the mark past them for good. A batch that writes nothing
   * found nothing left, or only rows another scheduler wrote, and that one, having written, goes on.
   */
  private async drain(write: (limit: number) => Promise<number>): Promise<{ written: number; complete: boolean }> {
    let written = 0;
    for (let i = 0; i < this.maxBatches; i++) {
      const n = await write(this.batchSize);
      written += n;
      if (n === 0) return { written, complete: true };
    }
    return { written, complete: false };
  }
}
