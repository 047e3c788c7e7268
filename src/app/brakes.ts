import { isRotorError, RotorError } from '../domain/errors.js';
import type { Clock } from '../domain/ports.js';
import {
  countsAsFailedAuth,
  retryAfterSeconds,
  type RateLimitKind,
  type RateLimits,
  type WindowCount,
} from '../domain/rate-limits.js';
import type { Logger } from './logger-port.js';

/**
 * Where the brakes' counters live (docs/limits.md): in memory on SQLite, in a table every replica
 * shares on PostgreSQL (src/store/rate-counter.ts). `hit` adds one to `key`'s fixed window at
 * `now` and returns the count after it; it may throw when its store is unreachable.
 */
export interface RateCounter {
  hit(key: string, windowMs: number, now: number): Promise<WindowCount>;
  close(): Promise<void>;
}

/** What the brakes did, for GET /metrics (src/http/metrics.ts). */
export interface BrakeStats {
  /** Events counted against a limit, by limit. */
  counted: Record<RateLimitKind, number>;
  /** Calls refused with `rate_limited`, by limit. */
  refused: Record<RateLimitKind, number>;
  /** Counter updates that failed (the store unreachable): the call went on as if under the limit. */
  storeFailures: number;
}

/** Most peers held as blocked in memory; past it the expired ones are swept. */
const MAX_BLOCKED_PEERS = 100_000;
/** A failing counter store is logged at most this often. */
const STORE_FAILURE_LOG_INTERVAL_MS = 10_000;

const MESSAGES: Record<RateLimitKind, string> = {
  failed_auth: 'too many failed authentications from this address',
  mints: 'too many tokens minted for this owner',
  rotations: 'too many rotations of this family',
};

/**
 * The brakes (docs/limits.md): failed authentications per peer address, tokens minted per owner
 * id, rotations per family, each a fixed window of ROTOR_RATE_LIMIT_* size.
 *
 * The hot path stays in memory: a successful call only looks its peer up in `blocked` (a map that
 * is empty unless some peer is over its limit). The shared counter is touched only when a call
 * failed authentication, or when a token is about to be minted or rotated. A counter that cannot
 * be reached fails open: the call goes on, the failure is counted and logged.
 */
export class Brakes {
  /** Peer key → when its block ends, for peers this process saw go over the failed-authentication limit. */
  private readonly blocked = new Map<string, number>();
  private readonly stats: BrakeStats = {
    counted: { failed_auth: 0, mints: 0, rotations: 0 },
    refused: { failed_auth: 0, mints: 0, rotations: 0 },
    storeFailures: 0,
  };
  private lastFailureLog = -Infinity;
  /** Peer (as a call reports it, with its port) → peer key, while some peer is blocked: one parse per connection. */
  private readonly keyOfPeer = new Map<string, string>();

  constructor(
    private readonly limits: RateLimits,
    private readonly counter: RateCounter,
    private readonly now: Clock,
    private readonly log: Logger,
    /** A call's peer (as CallMeta has it) → what it is counted under (an IPv4 address, an IPv6 /64). */
    private readonly peerKeyOf: (peer: string | null) => string,
  ) {}

  /** Whether `kind` is on (its maximum is not 0). */
  on(kind: RateLimitKind): boolean {
    return this.limits[kind].max > 0;
  }

  /** Whether any peer is held as blocked: while none is, a call needs no peer lookup at all. */
  get anyBlocked(): boolean {
    return this.blocked.size > 0;
  }

  /**
   * Refuses a call from a peer this process holds as blocked; synchronous and allocation-free
   * while no peer is blocked, which is the hot path.
   */
  checkPeer(peer: string | null): void {
    if (this.blocked.size === 0) return;
    const key = this.cachedKey(peer);
    const until = this.blocked.get(key);
    if (until === undefined) return;
    const now = this.now();
    if (until <= now) {
      this.blocked.delete(key);
      return;
    }
    this.stats.refused.failed_auth++;
    throw limited('failed_auth', until, now);
  }

  /**
   * After a call failed: counts a failed authentication against its peer, and answers what the
   * caller gets. Over the limit that is `rate_limited` (the peer is then refused until the window
   * ends); otherwise, and whenever the counter fails, the call's own error.
   */
  async afterFailure(peer: string | null, error: unknown): Promise<unknown> {
    if (!isRotorError(error) || !this.on('failed_auth')) return error;
    if (!countsAsFailedAuth(error.code, error.details.noCredentials === true)) return error;
    const key = this.peerKeyOf(peer);
    const w = await this.hit('failed_auth', `peer:${key}`);
    if (w === undefined || w.count <= this.limits.failed_auth.max) return error;
    this.block(key, w.resetAt);
    this.stats.refused.failed_auth++;
    return limited('failed_auth', w.resetAt, this.now());
  }

  /**
   * Counts one token about to be minted for `ownerId` (CreateToken, federation) or one rotation of
   * `familyId`, and refuses it with `rate_limited` when that is one more than the limit allows.
   */
  async take(kind: 'mints' | 'rotations', id: string): Promise<void> {
    if (!this.on(kind)) return;
    const w = await this.hit(kind, `${kind === 'mints' ? 'owner' : 'family'}:${id}`);
    if (w === undefined || w.count <= this.limits[kind].max) return;
    this.stats.refused[kind]++;
    throw limited(kind, w.resetAt, this.now());
  }

  /** Counts of what the brakes did since start (GET /metrics). */
  snapshot(): BrakeStats {
    return {
      counted: { ...this.stats.counted },
      refused: { ...this.stats.refused },
      storeFailures: this.stats.storeFailures,
    };
  }

  close(): Promise<void> {
    return this.counter.close();
  }

  /** One hit on the counter; undefined when the store failed (fail open). */
  private async hit(kind: RateLimitKind, key: string): Promise<WindowCount | undefined> {
    this.stats.counted[kind]++;
    const now = this.now();
    try {
      return await this.counter.hit(key, this.limits[kind].windowSeconds * 1000, now);
    } catch (e) {
      this.stats.storeFailures++;
      if (now - this.lastFailureLog >= STORE_FAILURE_LOG_INTERVAL_MS) {
        this.lastFailureLog = now;
        this.log.warn('rate limit counter unavailable; the call goes on unlimited', {
          limit: kind,
          failures: this.stats.storeFailures,
          error: e instanceof Error ? e.message : String(e),
        });
      }
      return undefined;
    }
  }

  private cachedKey(peer: string | null): string {
    if (peer === null) return this.peerKeyOf(peer);
    let key = this.keyOfPeer.get(peer);
    if (key === undefined) {
      if (this.keyOfPeer.size >= MAX_BLOCKED_PEERS) this.keyOfPeer.clear();
      key = this.peerKeyOf(peer);
      this.keyOfPeer.set(peer, key);
    }
    return key;
  }

  private block(key: string, until: number): void {
    if (this.blocked.size >= MAX_BLOCKED_PEERS) {
      const now = this.now();
      for (const [k, t] of this.blocked) if (t <= now) this.blocked.delete(k);
    }
    if (this.blocked.size < MAX_BLOCKED_PEERS) this.blocked.set(key, until);
  }
}

/** The error a brake answers with; its message names the limit and the wait, never the key. */
function limited(kind: RateLimitKind, resetAt: number, now: number): RotorError {
  const seconds = retryAfterSeconds(resetAt, now);
  return new RotorError('rate_limited', `${MESSAGES[kind]}; retry after ${seconds} s`, { retryAfterSeconds: seconds });
}
