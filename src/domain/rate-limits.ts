import type { RotorErrorCode } from './errors.js';

/**
 * The brakes of docs/limits.md: fixed-window counters per peer address (failed authentications),
 * per owner id (tokens minted) and per rotation family (rotations). Pure: the window arithmetic
 * and the one list of what counts as a failed authentication; the counting itself is a port
 * (src/app/brakes.ts).
 */
export type RateLimitKind = 'failed_auth' | 'mints' | 'rotations';

/** Every limit, in the order /metrics lists them. */
export const RATE_LIMIT_KINDS: readonly RateLimitKind[] = ['failed_auth', 'mints', 'rotations'];

/** One limit: at most `max` counted events per window; `max` 0 turns it off. */
export interface RateLimit {
  max: number;
  windowSeconds: number;
}

/** The three limits a server runs with (ROTOR_RATE_LIMIT_*). */
export type RateLimits = Readonly<Record<RateLimitKind, RateLimit>>;

/** Defaults: far above what an honest client does, low enough to stop a loop or a guesser within a minute. */
export const DEFAULT_RATE_LIMITS: RateLimits = {
  failed_auth: { max: 60, windowSeconds: 60 },
  mints: { max: 600, windowSeconds: 60 },
  rotations: { max: 30, windowSeconds: 60 },
};

/**
 * The error codes that count as a failed authentication of the caller's peer: a credential or a
 * workload JWT that is bad, unknown, revoked or expired. The one list: a new credential check (a
 * DPoP proof) adds its code here. Successes, refusals of a good credential (scope, permission,
 * rule 3) and server-side failures (`unavailable`, anything unexpected) never count.
 */
export const FAILED_AUTH_CODES: ReadonlySet<RotorErrorCode> = new Set<RotorErrorCode>([
  'invalid_token',
  'token_expired',
  'token_revoked',
  'unauthenticated',
  'invalid_workload_token',
  'workload_mismatch',
  // A DPoP proof that fails its checks (docs/dpop.md). Not `use_dpop_nonce`: fetching a nonce is
  // the protocol's normal first step, not a guess.
  'invalid_dpop_proof',
]);

/**
 * Whether an error counts against the caller's peer: its code is in the list, and the call carried
 * a credential (a call without any, `noCredentials`, guessed nothing).
 */
export function countsAsFailedAuth(code: RotorErrorCode, noCredentials: boolean): boolean {
  return FAILED_AUTH_CODES.has(code) && !noCredentials;
}

/** A counter's state after one more hit: how many hits its window holds, and when the window ends. */
export interface WindowCount {
  count: number;
  resetAt: number;
}

/**
 * One more hit on a fixed window: a window that ended at or before `now` starts again at `now`.
 * The same rule as the PostgreSQL statement of src/store/rate-counter.ts.
 */
export function hitWindow(previous: WindowCount | undefined, now: number, windowMs: number): WindowCount {
  if (previous === undefined || previous.resetAt <= now) return { count: 1, resetAt: now + windowMs };
  return { count: previous.count + 1, resetAt: previous.resetAt };
}

/** Whole seconds a refused caller waits (the `Retry-After` value): at least 1. */
export function retryAfterSeconds(resetAt: number, now: number): number {
  return Math.max(1, Math.ceil((resetAt - now) / 1000));
}
