/**
 * A map of what was set recently: at most `maxEntries` entries and, with `ttlMs`, none set more
 * than `ttlMs` ago (a sweep drops them even when nothing reads the map). The oldest leave first
 * (insertion order; setting a key again moves it to the end), so keeping it bounded costs constant
 * time per `set` on average. For memos on a hot path,
 * such as the digests of secrets presented in the last second (src/domain/token-keys.ts) and the
 * imported keys of DPoP proofs (src/identity/dpop-verifier.ts).
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, { value: V; at: number }>();
  /** With a TTL: the pending sweep, which drops expired entries when nothing reads or sets them. */
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly options: { maxEntries: number; ttlMs?: number; now?: () => number }) {}

  get(key: K): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (this.expired(e.at, this.now())) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: K, value: V): void {
    const now = this.now();
    this.entries.delete(key);
    // Oldest first: drop what is past its time, then make room.
    for (const [k, e] of this.entries) {
      if (!this.expired(e.at, now) && this.entries.size < this.options.maxEntries) break;
      this.entries.delete(k);
    }
    this.entries.set(key, { value, at: now });
    if (this.options.ttlMs !== undefined && this.sweeper === undefined) this.scheduleSweep(this.options.ttlMs);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Entries past their time also leave without a later get or set: a memo of secrets must not keep
   * one after traffic stops. One timer per map while it holds anything, not a timer per entry;
   * it does not keep the process alive.
   */
  private scheduleSweep(afterMs: number): void {
    this.sweeper = setTimeout(() => {
      this.sweeper = undefined;
      const now = this.now();
      for (const [k, e] of this.entries) {
        if (!this.expired(e.at, now)) {
          // The oldest left is the next to expire.
          this.scheduleSweep(Math.max(1, e.at + this.options.ttlMs! - now));
          return;
        }
        this.entries.delete(k);
      }
    }, afterMs);
    this.sweeper.unref();
  }

  private now(): number {
    if (this.options.ttlMs === undefined) return 0;
    return this.options.now ? this.options.now() : performance.now();
  }

  private expired(at: number, now: number): boolean {
    return this.options.ttlMs !== undefined && now - at >= this.options.ttlMs;
  }
}
