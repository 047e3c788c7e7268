import type { Code, ConnectError } from '@connectrpc/connect';
import { codeToString } from '@connectrpc/connect/protocol-connect';

/**
 * Counts of the RPCs the handlers finished, for GET /metrics (src/http/metrics.ts). Plain numbers
 * updated in place: the hot path pays an increment and a bucket search, nothing is formatted until
 * a scrape.
 */

/** Upper bounds, in seconds, of the unary duration histogram's buckets (then +Inf). */
export const DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The `code` label: `ok`, or Connect's name of the code (`invalid_argument`, `resource_exhausted`, …). */
export function codeLabel(code: Code | 0): string {
  return code === 0 ? 'ok' : codeToString(code);
}

/** One method: calls finished by code, and (unary) how long they took. */
export class MethodStats {
  /** Finished calls by code label. */
  readonly finished = new Map<string, number>();
  /** Failed calls by Rotor error code (`reuse_detected`, `token_expired`, …: the `rotor-error` metadata). */
  readonly errors = new Map<string, number>();
  /** Per-bucket (not cumulative) counts of unary durations; the last one is +Inf. */
  readonly buckets: number[] = new Array<number>(DURATION_BUCKETS.length + 1).fill(0);
  durationSum = 0;
  durationCount = 0;

  constructor(
    /** `rotor.v1.TokenService/RotateToken` */
    readonly method: string,
    readonly streaming: boolean,
  ) {}

  /** A call failed with `error` (after the one mapping); `startedMs` as for end(). */
  failed(error: ConnectError, startedMs?: number): void {
    const rotorError = error.metadata.get('rotor-error');
    if (rotorError !== null) this.errors.set(rotorError, (this.errors.get(rotorError) ?? 0) + 1);
    this.end(codeLabel(error.code), startedMs);
  }

  /** A call ended with `code`; `startedMs` (performance.now() at its start) for unary calls. */
  end(code: string, startedMs?: number): void {
    this.finished.set(code, (this.finished.get(code) ?? 0) + 1);
    if (startedMs === undefined) return;
    const seconds = (performance.now() - startedMs) / 1000;
    let i = 0;
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
    this.buckets[i]!++;
    this.durationSum += seconds;
    this.durationCount++;
  }
}

/** Every mounted method's stats; both ports' handlers share them (src/api/services.ts). */
export class RpcStats {
  private readonly methods = new Map<string, MethodStats>();

  method(name: string, streaming: boolean): MethodStats {
    let m = this.methods.get(name);
    if (!m) {
      m = new MethodStats(name, streaming);
      this.methods.set(name, m);
    }
    return m;
  }

  all(): MethodStats[] {
    return [...this.methods.values()];
  }
}
