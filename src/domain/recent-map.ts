/**
 * A map of what was set recently: at most `maxEntries` entries and, with `ttlMs`, none set more
 * than `ttlMs` ago. The oldest leave first (insertion order; setting a key again moves it to the
 * end), so keeping it bounded costs constant time per `set` on average. For memos on a hot path,
 * such as the digests of secrets presented in the last second (src/domain/token-keys.ts) and the
 * imported keys of DPoP proofs (src/identity/dpop-verifier.ts).
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, { value: V; at: number }>();

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
  }

  get size(): number {
    return this.entries.size;
  }

  private now(): number {
    if (this.options.ttlMs === undefined) return 0;
    return this.options.now ? this.options.now() : performance.now();
  }

  private expired(at: number, now: number): boolean {
    return this.options.ttlMs !== undefined && now - at >= this.options.ttlMs;
  }
}
