import type { ReplayCache } from '../domain/ports.js';

/**
 * An in-process ReplayCache: correct for one replica only. The server uses the database one
 * (src/store/jti-repository.ts); this one serves unit tests and embedders without a database.
 */
export class MemoryReplayCache implements ReplayCache {
  private readonly seen = new Map<string, { expiresAt: number; retryKeyDigest: string | undefined }>();

  async consume(
    entry: { jtiDigest: string; expiresAt: number; retryKeyDigest: string | undefined },
    now: number,
  ): Promise<boolean> {
    for (const [k, v] of this.seen) if (v.expiresAt <= now) this.seen.delete(k);
    const prior = this.seen.get(entry.jtiDigest);
    if (prior === undefined) {
      this.seen.set(entry.jtiDigest, { expiresAt: entry.expiresAt, retryKeyDigest: entry.retryKeyDigest });
      return true;
    }
    return prior.retryKeyDigest !== undefined && prior.retryKeyDigest === entry.retryKeyDigest;
  }
}
