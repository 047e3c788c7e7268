import { Code, ConnectError } from '@connectrpc/connect';

/** Time as the agent and `rotor watch` see it; tests pass a fake one. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Node timers overflow past 2^31 - 1 ms (about 24.8 days) and then fire after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The wall clock and real timers; long sleeps are chained in timer-sized steps. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const until = Date.now() + Math.max(0, ms);
      let timer: NodeJS.Timeout;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const step = () => {
        const left = until - Date.now();
        if (left <= 0) return done();
        timer = setTimeout(step, Math.min(left, MAX_TIMER_MS));
      };
      signal?.addEventListener('abort', done, { once: true });
      step();
    }),
};

/** Exponential backoff with jitter: base·2^attempt capped at max, then scaled into [½, 1]. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
  /** A number in [0, 1); Math.random unless a test pins it. */
  random?: () => number;
}

/** The delay before retry number `attempt` (0 = the first retry). */
export function backoffDelay(b: Backoff, attempt: number): number {
  const ceiling = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + 0.5 * (b.random ?? Math.random)()));
}

/** The longest `retry-after` honoured as asked; a larger value is read as this (a day). */
const MAX_RETRY_AFTER_S = 86_400;

/**
 * The wait a refusal asked for, in milliseconds: the `retry-after` seconds of a
 * RESOURCE_EXHAUSTED answer (a brake, docs/limits.md, on either protocol: a Connect or gRPC
 * response header, or an HTTP 429's `Retry-After`). Undefined for anything else.
 */
export function retryAfterMs(e: unknown): number | undefined {
  if (!(e instanceof ConnectError) || e.code !== Code.ResourceExhausted) return undefined;
  const value = e.metadata.get('retry-after')?.trim();
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Math.min(Number(value), MAX_RETRY_AFTER_S) * 1000;
}

/**
 * The delay before retry number `attempt` after `error`: the backoff, or, when the server said how
 * long to wait (retryAfterMs), that wait plus up to a tenth more, so that clients refused together
 * do not all come back in the same instant. Retrying sooner would only be refused again.
 */
export function retryDelay(b: Backoff, attempt: number, error: unknown): number {
  const backoff = backoffDelay(b, attempt);
  const asked = retryAfterMs(error);
  if (asked === undefined) return backoff;
  return Math.max(backoff, Math.round(asked * (1 + 0.1 * (b.random ?? Math.random)())));
}

/**
 * Codes worth retrying: the server is down, overloaded, restarting or the connection dropped
 * (connect-node reports a refused or reset connection as UNAVAILABLE, a cut stream as
 * UNAVAILABLE, UNKNOWN or INTERNAL). Everything a retry cannot change — authentication,
 * permission, bad input, a precondition, an unimplemented method — is final.
 */
const TRANSIENT = new Set<Code>([
  Code.Unavailable,
  Code.ResourceExhausted,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Internal,
  Code.Unknown,
  Code.Canceled,
]);

/** True for a ConnectError a retry may fix; false for anything else (including non-Connect errors). */
export function isTransient(e: unknown): boolean {
  return e instanceof ConnectError && TRANSIENT.has(e.code);
}

/** The ConnectError code of `e`, or undefined when `e` is not a ConnectError. */
export function connectCode(e: unknown): Code | undefined {
  return e instanceof ConnectError ? e.code : undefined;
}
