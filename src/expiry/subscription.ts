import type { LiveItem, LiveSubscription } from '../app/watch-ports.js';
import { RotorError } from '../domain/errors.js';
import { wantsEvent, type WatchSelection } from '../domain/expiry.js';
import type { WatchedEvent } from '../domain/token-event.js';

/** The ended state every later next() rejects with. */
const CLOSED = new RotorError('unavailable', 'watch closed');

/**
 * Watchers woken per event-loop turn when an event reaches many of them at once. Waking one
 * resumes its stream, which encodes nothing (messages are shared) but frames and writes; HTTP/2
 * sends what was written only when the turn ends. Waking all 10,000 watchers of a token in one
 * turn kept every byte in the server until the last stream was written (bench/README.md,
 * "Fan-out"); in slices of this size the first streams are on the wire while later ones are
 * still being written, and other work (RPCs, reads) runs between slices.
 */
export const WAKE_SLICE = 256;
let wakeQueue: Subscription[] = [];
let wakeScheduled = false;

function wakeSlice(): void {
  const now = wakeQueue.length <= WAKE_SLICE ? wakeQueue : wakeQueue.slice(0, WAKE_SLICE);
  wakeQueue = now === wakeQueue ? [] : wakeQueue.slice(WAKE_SLICE);
  for (const s of now) s.wakeQueued();
  if (wakeQueue.length > 0) setImmediate(wakeSlice);
  else wakeScheduled = false;
}

/** The last heartbeat item: watchers due in the same timer tick share it (and so its encoded bytes). */
let lastHeartbeat: { kind: 'heartbeat'; sequence: number; at: number } | undefined;

/**
 * One watcher in the live feed: a bounded FIFO between the feed (producer, never waits) and the
 * stream (consumer, paced by the transport's backpressure). A full buffer ends only this watcher,
 * with RESOURCE_EXHAUSTED, and drops what it held: the client resumes from the log by sequence.
 * No timer of its own; the feed's single heartbeat timer looks at `idleSince`.
 */
export class Subscription implements LiveSubscription {
  private queue: LiveItem[] = [];
  /** The stream waiting in next(): settled with the next item, or the failure. */
  private resolveWaiter: ((r: IteratorResult<LiveItem, never>) => void) | undefined;
  private rejectWaiter: ((e: RotorError) => void) | undefined;
  private wakePending = false;
  private failure: RotorError | undefined;
  /** Set by endAfterQueued: the reason next() rejects with once the queue is empty. */
  private ending: RotorError | undefined;
  private floor: number;
  live = false;
  /** Real time (ms) of the last item queued or taken; heartbeats go to watchers idle for long enough. */
  idleSince: number;

  constructor(
    readonly selection: WatchSelection,
    readonly credentialId: string,
    private readonly thresholds: ReadonlySet<number>,
    readonly liveFrom: number,
    private readonly capacity: number,
    private readonly detach: (s: Subscription) => void,
    /** Told when this watcher fell behind and ends with RESOURCE_EXHAUSTED (counted for /metrics). */
    private readonly overflowed: () => void = () => undefined,
  ) {
    this.floor = liveFrom;
    this.idleSince = Date.now();
  }

  get ended(): boolean {
    return this.failure !== undefined;
  }

  get pending(): number {
    return this.queue.length;
  }

  skipThrough(sequence: number): void {
    if (sequence <= this.floor) return;
    this.floor = sequence;
    this.queue = this.queue.filter((i) => i.kind !== 'event' || i.event.sequence > sequence);
  }

  markLive(): void {
    this.live = true;
  }

  /** Called by the feed for every event of the selection, in sequence order. */
  offer(item: { kind: 'event'; event: WatchedEvent }): void {
    const event = item.event;
    if (this.failure || event.sequence <= this.floor) return;
    if (!wantsEvent(this.thresholds, event)) return;
    if (this.queue.length >= this.capacity) {
      this.overflowed();
      this.fail(
        new RotorError(
          'resource_exhausted',
          `watcher fell behind by more than ${this.capacity} events; reconnect with after_sequence set to the last sequence received`,
        ),
      );
      return;
    }
    this.push(item);
  }

  /** Queues a heartbeat; the feed only calls this for a live watcher with nothing pending. */
  heartbeat(sequence: number, at: number): void {
    if (this.failure) return;
    const seq = Math.max(sequence, this.floor);
    if (lastHeartbeat?.sequence !== seq || lastHeartbeat.at !== at)
      lastHeartbeat = { kind: 'heartbeat', sequence: seq, at };
    this.push(lastHeartbeat);
  }

  /**
   * Ends the subscription after what it holds: it takes no further events, the queued ones (the
   * event that ended its credential among them) are still delivered, then next() rejects.
   */
  endAfterQueued(reason: RotorError): void {
    if (this.failure || this.ending) return;
    this.ending = reason;
    this.detach(this);
    if (this.queue.length === 0) this.fail(reason);
  }

  /** Ends the subscription: queued items are dropped and next() rejects with `reason`. */
  fail(reason: RotorError): void {
    if (this.failure) return;
    this.failure = reason;
    this.queue = [];
    this.detach(this);
    this.wake();
  }

  /**
   * The next item, or the reason the subscription ended. Not an async function: a waiting stream
   * holds one promise, which push() (through the wake slices) settles with the item itself, so a
   * delivery costs one promise per stream (bench/README.md, "Fourth session").
   */
  next(): Promise<IteratorResult<LiveItem, never>> {
    const now = this.ready();
    if (now instanceof RotorError) return Promise.reject(now);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      this.resolveWaiter = resolve;
      this.rejectWaiter = reject;
    });
  }

  /**
   * What next() can answer at once: the next queued item, or the failure (an ending
   * subscription fails once its queue ran dry); undefined when the stream has to wait.
   */
  private ready(): IteratorResult<LiveItem, never> | RotorError | undefined {
    if (!this.failure) {
      const item = this.queue.shift();
      if (item) {
        if (item.kind === 'event') this.floor = Math.max(this.floor, item.event.sequence);
        this.idleSince = Date.now();
        return { done: false, value: item };
      }
      if (this.ending) this.fail(this.ending);
    }
    return this.failure;
  }

  close(): void {
    this.fail(CLOSED);
  }

  private push(item: LiveItem): void {
    this.queue.push(item);
    this.idleSince = Date.now();
    // Only a stream waiting in next() needs waking; a busy one takes the item when it comes back.
    if (!this.resolveWaiter || this.wakePending) return;
    this.wakePending = true;
    wakeQueue.push(this);
    if (!wakeScheduled) {
      wakeScheduled = true;
      setImmediate(wakeSlice);
    }
  }

  /** The wake-up queued by push() is due (wakeSlice). */
  wakeQueued(): void {
    this.wakePending = false;
    this.wake();
  }

  /** Settles the waiting next(), if any: with the next queued item, or the failure. */
  private wake(): void {
    const resolve = this.resolveWaiter;
    const reject = this.rejectWaiter;
    if (!resolve || !reject) return;
    // Cleared first: ready() may fail() the subscription, which wakes again.
    this.resolveWaiter = this.rejectWaiter = undefined;
    const now = this.ready();
    if (now instanceof RotorError) reject(now);
    else if (now) resolve(now);
    else {
      // Nothing yet: keep waiting.
      this.resolveWaiter = resolve;
      this.rejectWaiter = reject;
    }
  }
}
