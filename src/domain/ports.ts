/** A clock in milliseconds since the epoch; the domain never reads time itself. */
export type Clock = () => number;

/** A source of cryptographically strong random bytes; injected so tests can seed it. */
export type RandomSource = (length: number) => Uint8Array;

/**
 * Remembers the `jti` of every workload JWT accepted until it expires (RFC 8725 §3.10 style
 * replay protection: one proof, one use). Implementations: src/store/jti-repository.ts
 * (database, shared by replicas) and the in-memory one in src/identity/replay-cache.ts.
 */
export interface ReplayCache {
  /**
   * Records a use of `jtiDigest` until `expiresAt` (ms). True when this is its first use, or a
   * retry of the same request: the same `retryKeyDigest` (idempotency key and rotated token) as
   * the first use.
   */
  consume(
    entry: { jtiDigest: string; expiresAt: number; retryKeyDigest: string | undefined },
    now: number,
  ): Promise<boolean>;
}
