import type { Duration } from '@bufbuild/protobuf/wkt';
import type { ExpiryEvent } from '../gen/rotor/v1/expiry_service_pb.js';
import { backoffDelay, isTransient, type Backoff, type Clock } from './retry-policy.js';

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
  /** Told about every reconnect, with the error (undefined: the server ended the stream) and the delay. */
  onReconnect?: (error: unknown, delayMs: number, afterSequence: bigint | undefined) => void;
}

/**
 * WatchExpiry that survives transient failures: it reconnects with backoff and `after_sequence`
 * set to the newest sequence seen, so the server replays exactly the missed events (issue 4).
 * A snapshot is asked for on the first call, and on reconnects only while no sequence is known;
 * after that the replay covers every change. Final errors (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, …) are thrown; an
 * abort of `signal` ends the iteration quietly.
 */
export async function* resumableWatch(open: OpenWatch, selection: WatchSelection, opts: ResumableWatchOptions): AsyncGenerator<ExpiryEvent> {
  let after = opts.afterSequence;
  let attempt = 0;
  let first = true;
  while (!opts.signal.aborted) {
    let failure: unknown;
    try {
      const includeSnapshot = opts.includeSnapshot && (first || after === undefined);
      first = false;
      const request = { ...selection, includeSnapshot, ...(after === undefined ? {} : { afterSequence: after }) };
      for await (const event of open(request, opts.signal)) {
        attempt = 0;
        if (event.sequence > 0n && (after === undefined || event.sequence > after)) after = event.sequence;
        yield event;
      }
    } catch (e) {
      if (opts.signal.aborted) return;
      if (!isTransient(e)) throw e;
      failure = e;
    }
    if (opts.signal.aborted) return;
    const delay = backoffDelay(opts.backoff, attempt++);
    opts.onReconnect?.(failure, delay, after);
    await opts.clock.sleep(delay, opts.signal);
  }
}
