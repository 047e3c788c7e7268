import type { Duration } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError } from '@connectrpc/connect';
import type { ExpiryEvent } from '../gen/rotor/v1/expiry_service_pb.js';
import { isTransient, retryDelay, type Backoff, type Clock } from './retry-policy.js';

/** The selection part of a WatchExpiry request (proto field names, camelCase). */
export interface WatchSelection {
  tokenIds?: string[];
  ownerId?: string;
  familyId?: string;
  thresholds?: Duration[];
}

/** One WatchExpiry call as the caller's transport makes it. */
export type OpenWatch = (
  request: WatchSelection & { afterSequence?: bigint; includeSnapshot: boolean },
  signal: AbortSignal,
) => AsyncIterable<ExpiryEvent>;

export interface ResumableWatchOptions {
  clock: Clock;
  backoff: Backoff;
  signal: AbortSignal;
  /** Resume after this sequence from the start. */
  afterSequence?: bigint;
  includeSnapshot: boolean;
  /**
   * Reconnect when nothing, not even a heartbeat, arrived for this long: a connection that died
   * without a reset (a NAT or proxy dropped it) would otherwise wait forever. Undefined: never.
   */
  idleTimeoutMs?: number;
  /** Told about every reconnect, with the error (undefined: the server ended the stream) and the delay. */
  onReconnect?: (error: unknown, delayMs: number, afterSequence: bigint | undefined) => void;
}

/**
 * WatchExpiry that survives transient failures: it reconnects with backoff and `after_sequence`
 * set to the newest sequence seen, so the server replays exactly the missed events
 * (docs/watch-expiry.md, Resume).
 * A snapshot is asked for on the first call, and on reconnects only while no sequence is known;
 * after that the replay covers every change. A call silent for `idleTimeoutMs` is cut and
 * resumed the same way. Final errors (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, …) are
 * thrown; an abort of `signal` ends the iteration quietly.
 */
export async function* resumableWatch(
  open: OpenWatch,
  selection: WatchSelection,
  opts: ResumableWatchOptions,
): AsyncGenerator<ExpiryEvent> {
  let after = opts.afterSequence;
  let attempt = 0;
  let first = true;
  while (!opts.signal.aborted) {
    let failure: unknown;
    const call = new AbortController();
    const cancel = () => call.abort();
    opts.signal.addEventListener('abort', cancel, { once: true });
    let lastSeen = opts.clock.now();
    let idle = false;
    if (opts.idleTimeoutMs !== undefined)
      void watchIdle(
        opts.clock,
        opts.idleTimeoutMs,
        call,
        () => lastSeen,
        () => (idle = true),
      );
    try {
      const includeSnapshot = opts.includeSnapshot && (first || after === undefined);
      first = false;
      const request = { ...selection, includeSnapshot, ...(after === undefined ? {} : { afterSequence: after }) };
      for await (const event of open(request, call.signal)) {
        attempt = 0;
        lastSeen = opts.clock.now();
        if (event.sequence > 0n && (after === undefined || event.sequence > after)) after = event.sequence;
        yield event;
      }
    } catch (e) {
      if (opts.signal.aborted) return;
      if (!idle && !isTransient(e)) throw e;
      failure = e;
    } finally {
      call.abort();
      opts.signal.removeEventListener('abort', cancel);
    }
    if (opts.signal.aborted) return;
    if (idle) failure = new ConnectError(`no event or heartbeat for ${opts.idleTimeoutMs} ms`, Code.DeadlineExceeded);
    const delay = retryDelay(opts.backoff, attempt++, failure);
    opts.onReconnect?.(failure, delay, after);
    await opts.clock.sleep(delay, opts.signal);
  }
}

/** Aborts `call` once `lastSeen()` is `limitMs` old; ends when the call ends. */
async function watchIdle(
  clock: Clock,
  limitMs: number,
  call: AbortController,
  lastSeen: () => number,
  onIdle: () => void,
): Promise<void> {
  while (!call.signal.aborted) {
    await clock.sleep(lastSeen() + limitMs - clock.now(), call.signal);
    if (!call.signal.aborted && clock.now() - lastSeen() >= limitMs) {
      onIdle();
      call.abort();
    }
  }
}
