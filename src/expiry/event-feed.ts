import type { Logger } from '../app/context.js';
import type { EventRepository } from '../app/store-ports.js';
import type { LiveFeed } from '../app/watch-ports.js';
import { RotorError } from '../domain/errors.js';
import { endsCredential, type WatchSelection } from '../domain/expiry.js';
import type { Clock } from '../domain/ports.js';
import type { WatchedEvent } from '../domain/token-event.js';
import { Subscription } from './subscription.js';

/** Settings of the live feed (README: ROTOR_WATCH_*). */
export interface EventFeedOptions {
  /** Poll the log this often even without a local wake-up (other processes' commits). */
  pollIntervalMs: number;
  /** A live watcher idle this long gets a HEARTBEAT. */
  heartbeatMs: number;
  /** Undelivered events one watcher may hold before its stream ends with RESOURCE_EXHAUSTED. */
  bufferEvents: number;
}

const PAGE = 1000;

/** How streams end when the feed cannot read the log (src/store/database-errors.ts said `unavailable`). */
const DATABASE_LOST = new RotorError('unavailable', 'database unavailable; reconnect with after_sequence set to the last sequence received');

/**
 * ONE live feed of the event log for every WatchExpiry stream of this process. It reads the log
 * after `wake()` (local commits call it, and NOTIFYs of other replicas' events on PostgreSQL)
 * and on a poll interval, in sequence order, and offers each event to the watchers whose
 * selection it concerns through three indexes (token id, owner id, family id), so the cost of an
 * event follows the number of its watchers. The log stays the source of truth: a watcher that
 * falls behind is cut off and resumes from the log by sequence.
 */
export class EventFeed implements LiveFeed {
  /** Every event up to this sequence has been offered to the watchers. */
  position = 0;
  private readonly subs = new Set<Subscription>();
  private readonly byToken = new Map<string, Set<Subscription>>();
  private readonly byOwner = new Map<string, Set<Subscription>>();
  private readonly byFamily = new Map<string, Set<Subscription>>();
  /** Watchers by the bearer token their stream was authorized with. */
  private readonly byCredential = new Map<string, Set<Subscription>>();
  private polling = false;
  private stale = false;
  private again = false;
  /** The highest sequence a notification asked for that no read has covered yet. */
  private wanted = 0;
  private closed = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private idle: Promise<void> = Promise.resolve();
  /** Threshold sets shared between watchers that ask for the same ones (most ask for all). */
  private readonly thresholdSets = new Map<string, ReadonlySet<number>>();

  constructor(
    private readonly events: EventRepository,
    private readonly now: Clock,
    private readonly log: Logger,
    private readonly options: EventFeedOptions,
  ) {}

  /** Starts at the end of the log, with the poll and heartbeat timers (one each for all watchers). */
  async start(): Promise<void> {
    this.position = await this.events.latestSequence();
    this.pollTimer = setInterval(() => this.read(), this.options.pollIntervalMs).unref();
    const tick = Math.max(100, Math.min(1000, Math.floor(this.options.heartbeatMs / 3)));
    this.heartbeatTimer = setInterval(() => this.heartbeats(), tick).unref();
  }

  get watchers(): number {
    return this.subs.size;
  }

  subscribe(selection: WatchSelection, thresholdsSeconds: readonly number[], credentialId: string): Subscription {
    if (this.closed) throw new RotorError('unavailable', 'server is shutting down; reconnect to another replica');
    const key = thresholdsSeconds.join(',');
    let thresholds = this.thresholdSets.get(key);
    if (!thresholds) this.thresholdSets.set(key, (thresholds = new Set(thresholdsSeconds)));
    const sub = new Subscription(selection, credentialId, thresholds, this.position, this.options.bufferEvents, (s) => this.detach(s));
    this.subs.add(sub);
    for (const [index, key] of this.keysOf(sub)) {
      let set = index.get(key);
      if (!set) index.set(key, (set = new Set()));
      set.add(sub);
    }
    if (this.stale) {
      this.stale = false;
      this.read();
    }
    return sub;
  }

  /**
   * Asks for a read of the log soon; calls during a read cause exactly one more read. Without
   * watchers nothing needs the events at once: the read waits for the poll interval or the next
   * subscriber, so writes (rotations) pay no extra query while nobody watches.
   *
   * `through`: the sequence a notification names (PostgreSQL NOTIFY). A wake for a sequence the
   * feed has already read is dropped, also when it arrives during a read: on PostgreSQL each
   * local commit's own NOTIFY comes back while the read its commit started is still running, and
   * a second read would settle the log (the event-order lock) for nothing.
   */
  wake(through?: number): void {
    if (this.closed) return;
    if (through !== undefined) {
      if (through <= this.position) return;
      this.wanted = Math.max(this.wanted, through);
    }
    if (this.subs.size === 0) {
      this.stale = true;
      return;
    }
    this.read(through === undefined);
  }

  private read(unconditional = true): void {
    if (this.closed) return;
    if (this.polling) {
      if (unconditional) this.again = true;
      return;
    }
    this.polling = true;
    this.idle = this.poll().finally(() => {
      this.polling = false;
      if ((this.again || this.wanted > this.position) && !this.closed) {
        this.again = false;
        this.read();
      }
    });
  }

  /** Resolves when the read in progress (if any) has offered its events. For tests and the bench. */
  settled(): Promise<void> {
    return this.idle;
  }

  /** Ends every stream with UNAVAILABLE (clients reconnect elsewhere) and stops the timers. */
  close(): void {
    this.closed = true;
    clearInterval(this.pollTimer);
    clearInterval(this.heartbeatTimer);
    const reason = new RotorError('unavailable', 'server is shutting down; reconnect with after_sequence set to the last sequence received');
    for (const s of [...this.subs]) s.fail(reason);
  }

  /**
   * Ends every stream with `reason` (UNAVAILABLE) but keeps the feed running: new watchers may
   * join, and the feed reads on from its position once the database answers again.
   */
  private interrupt(reason: RotorError): void {
    for (const s of [...this.subs]) s.fail(reason);
  }

  private async poll(): Promise<void> {
    try {
      for (;;) {
        this.again = false;
        // This read covers what was asked for so far; later asks count again in read()'s finally.
        this.wanted = 0;
        if (this.subs.size === 0) {
          // Nobody to offer events to: move to the end of the log with one cheap read instead
          // of reading (and mapping) every event since the last poll. A watcher that subscribes
          // during that read starts at the old position, so the jump is then skipped and the
          // events are read for it as usual.
          const end = await this.events.latestSequence();
          if (this.subs.size === 0) {
            this.position = Math.max(this.position, end);
            return;
          }
        }
        const rows = await this.events.tail(this.position, PAGE);
        // A hole in the sequence is final on both engines (SQLite has one writer; on PostgreSQL
        // tail() reads only up to the settled sequence, migration 20261127_051): a rolled-back number.
        for (const e of rows) {
          this.position = e.sequence;
          this.dispatch(e);
        }
        if (rows.length < PAGE) return;
      }
    } catch (e) {
      this.log.warn('event feed read failed; retrying on the next poll', { error: e instanceof Error ? e.message : String(e) });
      // The database is gone: end the streams so clients resume elsewhere (or here, later).
      if (e instanceof RotorError && e.code === 'unavailable') this.interrupt(DATABASE_LOST);
    }
  }

  private dispatch(e: WatchedEvent): void {
    // One item for every watcher: with thousands of them, per-watcher copies would be garbage.
    const item = { kind: 'event', event: e } as const;
    for (const set of [this.byToken.get(e.tokenId), this.byOwner.get(e.ownerId), this.byFamily.get(e.familyId)]) {
      if (set) for (const s of set) s.offer(item);
    }
    // After the offers, so that a watcher of its own token still receives the event first.
    const ended = endsCredential(e.type);
    const holders = ended && this.byCredential.get(e.tokenId);
    if (holders) {
      const reason = new RotorError('unauthenticated', `bearer token ${ended === 'expired' ? 'has expired' : 'has been revoked'}; reconnect with a valid token`);
      for (const s of [...holders]) s.endAfterQueued(reason);
    }
  }

  private heartbeats(): void {
    const t = Date.now();
    const at = this.now();
    for (const s of this.subs) {
      if (s.live && s.pending === 0 && t - s.idleSince >= this.options.heartbeatMs) s.heartbeat(this.position, at);
    }
  }

  private detach(sub: Subscription): void {
    if (!this.subs.delete(sub)) return;
    for (const [index, key] of this.keysOf(sub)) {
      const set = index.get(key);
      set?.delete(sub);
      if (set?.size === 0) index.delete(key);
    }
  }

  /** The index entries of a watcher: its selection's, and its credential's. */
  private keysOf(sub: Subscription): [Map<string, Set<Subscription>>, string][] {
    const credential: [Map<string, Set<Subscription>>, string] = [this.byCredential, sub.credentialId];
    const selection = sub.selection;
    switch (selection.kind) {
      case 'tokens':
        return [...[...new Set(selection.tokenIds)].map((id): [Map<string, Set<Subscription>>, string] => [this.byToken, id]), credential];
      case 'owner':
        return [[this.byOwner, selection.ownerId], credential];
      case 'family':
        return [[this.byFamily, selection.familyId], credential];
    }
  }
}
