/**
 * A background pass run every `intervalMs` (the expiry scheduler, the retention job): passes of
 * one process never overlap, whether the timer or a caller (tests move the clock and call
 * `runOnce()`) starts them; a failed pass is reported and the next one comes on schedule;
 * `stop()` ends the timer and waits for the pass in progress.
 */
export class PeriodicPass<T> {
  private running: Promise<T> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stoppedAt = false;

  constructor(
    private readonly pass: () => Promise<T>,
    private readonly onFailure: (e: unknown) => void,
  ) {}

  /** True once `stop()` was called; a long pass checks it between batches. */
  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Starts the timer: the first pass after `firstDelayMs`, then one every `intervalMs`; no-op if started. */
  start(firstDelayMs: number, intervalMs: number): void {
    if (this.timer) return;
    const tick = () => {
      this.runOnce()
        .catch((e: unknown) => this.onFailure(e))
        .finally(() => {
          if (!this.stoppedAt) this.timer = setTimeout(tick, intervalMs).unref();
        });
    };
    this.timer = setTimeout(tick, firstDelayMs).unref();
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stoppedAt = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }

  /** Runs one pass now, after the one in progress (if any). */
  runOnce(): Promise<T> {
    const previous = this.running ?? Promise.resolve(undefined);
    const next = previous.catch(() => undefined).then(() => this.pass());
    this.running = next;
    return next;
  }
}
