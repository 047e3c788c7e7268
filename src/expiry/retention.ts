import type { Logger } from '../app/logger-port.js';
import type { EndedTokenCursor, Store } from '../app/store-ports.js';
import type { Clock } from '../domain/ports.js';
import { retentionCutoff } from '../domain/retention.js';
import { PeriodicPass } from './periodic-pass.js';

/** Settings of the retention job (README: ROTOR_RETENTION_*). */
export interface RetentionOptions {
  /** Tokens that ended, and events written, longer ago than this are deleted; 0 keeps everything. */
  retentionDays: number;
  /** Time between passes; 0 runs no timer (passes only through runOnce()). */
  intervalMs: number;
  /** Rows one batch (one short transaction) examines at most. */
  batchSize?: number;
}

/** What one pass did. `elsewhere`: another replica held the pass lock, so this one did nothing. */
export interface RetentionResult {
  outcome: 'done' | 'disabled' | 'elsewhere' | 'stopped';
  tokens: number;
  events: number;
  /** Transactions the pass ran. */
  batches: number;
}

/** Rows one batch examines: small enough that a batch is a short transaction on either engine. */
export const RETENTION_BATCH_SIZE = 1000;

/** How long after start the first pass runs. */
const FIRST_PASS_DELAY_MS = 60_000;

/** The name of the pass lock (`Store.runExclusive`). */
const LOCK = 'retention';

/**
 * Deletes what ROTOR_RETENTION_DAYS no longer keeps, in bounded batches, each its own short
 * transaction, so writers never wait long behind it:
 *
 * 1. tokens whose whole family ended (expired, revoked or rotated) before the cutoff
 *    (`TokenRepository.deleteEnded`; docs/rotation.md, "Retention");
 * 2. then the prefix of the event log written before the cutoff (`deleteWrittenBefore`), except
 *    EXPIRING_SOON / EXPIRED events the scheduler would write again for a token still there;
 *    those go once their token is deleted, revoked or rotated (`deleteReleased`).
 *
 * Tokens go first with the same cutoff: an EXPIRED event old enough to delete belongs to a token
 * that expired before the cutoff, so the token is gone by then and the scheduler cannot write the
 * event again. A pass runs under a lock (`Store.runExclusive`): with several replicas exactly one
 * runs it, and the others skip (`elsewhere`), so each deleted row is deleted and counted once.
 */
export class RetentionJob {
  private readonly loop: PeriodicPass<RetentionResult>;
  private readonly totals = { passes: 0, failures: 0, elsewhere: 0, tokens: 0, events: 0 };
  private readonly batchSize: number;

  constructor(
    private readonly store: Pick<Store, 'runExclusive'>,
    private readonly now: Clock,
    private readonly log: Logger,
    private readonly options: RetentionOptions,
  ) {
    this.batchSize = options.batchSize ?? RETENTION_BATCH_SIZE;
    this.loop = new PeriodicPass(
      () =>
        this.pass().then(
          (r) => {
            if (r.outcome === 'elsewhere') this.totals.elsewhere++;
            else if (r.outcome !== 'disabled') this.totals.passes++;
            return r;
          },
          (e: unknown) => {
            this.totals.failures++;
            throw e;
          },
        ),
      (e) => this.log.warn('retention pass failed', { error: e instanceof Error ? e.message : String(e) }),
    );
  }

  private get stopped(): boolean {
    return this.loop.stopped;
  }

  /** For GET /metrics: passes by result, and rows this process deleted, since it started. */
  stats(): { passes: number; failures: number; elsewhere: number; tokens: number; events: number } {
    return { ...this.totals };
  }

  /**
   * Starts the periodic passes; nothing with 0 days or interval 0. The first pass comes after
   * FIRST_PASS_DELAY_MS (or the interval, if shorter), not at once: replicas starting together
   * do not all try the lock while they are busy starting.
   */
  start(): void {
    if (this.options.retentionDays === 0 || this.options.intervalMs === 0) return;
    this.loop.start(Math.min(FIRST_PASS_DELAY_MS, this.options.intervalMs), this.options.intervalMs);
  }

  /** Stops the timer; a pass in progress ends after its current batch. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs one pass now (tests move the clock and call this). Passes of one process never overlap. */
  runOnce(): Promise<RetentionResult> {
    return this.loop.runOnce();
  }

  private async pass(): Promise<RetentionResult> {
    const cutoff = retentionCutoff(this.now(), this.options.retentionDays);
    if (cutoff === undefined) return { outcome: 'disabled', tokens: 0, events: 0, batches: 0 };
    const r = await this.store.runExclusive(LOCK, async (transaction) => {
      const result: RetentionResult = { outcome: 'done', tokens: 0, events: 0, batches: 0 };
      // Counted as each batch commits, so a pass that fails half-way still reports what it deleted.
      const count = (tokens: number, events: number) => {
        result.batches++;
        result.tokens += tokens;
        result.events += events;
        this.totals.tokens += tokens;
        this.totals.events += events;
      };
      try {
        let cursor: EndedTokenCursor | undefined;
        do {
          if (this.stopped) return { ...result, outcome: 'stopped' as const };
          const after = cursor;
          const b = await transaction((tx) =>
            tx.tokens.deleteEnded({ endedBefore: cutoff, limit: this.batchSize, after }),
          );
          count(b.deletedIds.length, 0);
          cursor = b.next;
        } while (cursor !== undefined);
        for (let more = true; more; ) {
          if (this.stopped) return { ...result, outcome: 'stopped' as const };
          const b = await transaction((tx) => tx.events.deleteWrittenBefore({ before: cutoff, limit: this.batchSize }));
          count(0, b.deleted);
          more = b.more;
        }
        for (let after: number | undefined = 0; after !== undefined; ) {
          if (this.stopped) return { ...result, outcome: 'stopped' as const };
          const from: number = after;
          const b: { deleted: number; next: number | undefined } = await transaction((tx) =>
            tx.events.deleteReleased({ limit: this.batchSize, after: from }),
          );
          count(0, b.deleted);
          after = b.next;
        }
        return result;
      } finally {
        if (result.tokens + result.events > 0) {
          this.log.info('retention deleted rows', {
            tokens: result.tokens,
            events: result.events,
            batches: result.batches,
            cutoff: new Date(cutoff).toISOString(),
          });
        }
      }
    });
    return r.ran ? r.value : { outcome: 'elsewhere', tokens: 0, events: 0, batches: 0 };
  }
}
