/** What the standard health service (grpc.health.v1) reports for one service name. */
export type ServingStatus = 'SERVING' | 'NOT_SERVING';

/** Called with each service whose status changed, and its new status. */
export type HealthListener = (service: string, status: ServingStatus) => void;

export interface HealthStateOptions {
  /** Service names that need the database; `''` (the whole server) always does. */
  databaseServices: readonly string[];
  /** Service names that do no I/O: NOT_SERVING only once a shutdown drain has started. */
  processServices: readonly string[];
  /** How old the last database verdict may be before Check pings again; also the watch interval. */
  intervalMs: number;
  now?: () => number;
}

/**
 * The serving status behind `grpc.health.v1.Health` on both ports (README, "Health checks"). It
 * follows the signal `GET /healthz` uses: the database answers a ping, and no call has just found
 * it unreachable (`reportUnavailable`, fed by the store's unavailable reports). The database is
 * pinged only when someone asks: by Check when the last verdict is older than `intervalMs`
 * (concurrent Checks share one ping), and every `intervalMs` while at least one Watch is open,
 * so an idle server costs the database nothing. `drain()` turns every service NOT_SERVING for
 * good, first thing in a shutdown, so load balancers stop sending before the ports close.
 */
export class HealthState {
  private databaseUp = true;
  private draining = false;
  private lastVerdictAt = Number.NEGATIVE_INFINITY;
  private inflight: Promise<void> | undefined;
  private watchers = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<HealthListener>();
  private readonly closeListeners = new Set<() => void>();
  private readonly databaseServices: ReadonlySet<string>;
  private readonly processServices: ReadonlySet<string>;
  private readonly now: () => number;

  constructor(
    private readonly ping: () => Promise<void>,
    private readonly options: HealthStateOptions,
  ) {
    this.databaseServices = new Set(['', ...options.databaseServices]);
    this.processServices = new Set(options.processServices);
    this.now = options.now ?? Date.now;
  }

  /** Every service name reported, `''` first. */
  services(): string[] {
    return [...this.databaseServices, ...this.processServices];
  }

  /** The status known now; undefined for a service name that is not reported. */
  status(service: string): ServingStatus | undefined {
    if (this.processServices.has(service)) return this.draining ? 'NOT_SERVING' : 'SERVING';
    if (this.databaseServices.has(service)) return this.draining || !this.databaseUp ? 'NOT_SERVING' : 'SERVING';
    return undefined;
  }

  /** The status after a fresh database verdict (a ping when the last is older than the interval). */
  async check(service: string): Promise<ServingStatus | undefined> {
    if (this.databaseServices.has(service) && !this.draining) await this.refreshIfStale();
    return this.status(service);
  }

  /** Pings the database unless a verdict younger than the interval exists (or a ping is running). */
  refreshIfStale(): Promise<void> {
    if (this.inflight) return this.inflight;
    if (this.now() - this.lastVerdictAt < this.options.intervalMs) return Promise.resolve();
    this.inflight = this.ping().then(
      () => this.setDatabase(true),
      () => this.setDatabase(false),
    );
    return this.inflight.finally(() => {
      this.inflight = undefined;
    });
  }

  /** A call found the database unreachable (the store's unavailable report). */
  reportUnavailable(): void {
    this.setDatabase(false);
  }

  /** Calls `listener` on every change until the returned function is called. */
  onChange(listener: HealthListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` once when the state closes (shutdown): open watches end then. */
  onClose(listener: () => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * A Watch opened: keeps the database pinged every interval while any is open. Returns the
   * release to call when it ends.
   */
  retain(): () => void {
    this.watchers++;
    if (this.watchers === 1 && !this.draining) {
      void this.refreshIfStale();
      this.timer = setInterval(() => void this.refreshIfStale(), this.options.intervalMs);
      this.timer.unref();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.watchers--;
      if (this.watchers === 0) this.stopTimer();
    };
  }

  /** The shutdown drain started: every service is NOT_SERVING from now on. */
  drain(): void {
    if (this.draining) return;
    const before = this.snapshot();
    this.draining = true;
    this.stopTimer();
    this.announce(before);
  }

  /** Ends every open watch (after the drain) and stops pinging. */
  close(): void {
    this.drain();
    for (const listener of [...this.closeListeners]) listener();
    this.closeListeners.clear();
    this.listeners.clear();
  }

  private setDatabase(up: boolean): void {
    this.lastVerdictAt = this.now();
    if (this.databaseUp === up) return;
    const before = this.snapshot();
    this.databaseUp = up;
    this.announce(before);
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private snapshot(): Map<string, ServingStatus | undefined> {
    return new Map(this.services().map((s) => [s, this.status(s)]));
  }

  private announce(before: Map<string, ServingStatus | undefined>): void {
    for (const [service, was] of before) {
      const now = this.status(service);
      if (now === undefined || now === was) continue;
      for (const listener of [...this.listeners]) listener(service, now);
    }
  }
}
