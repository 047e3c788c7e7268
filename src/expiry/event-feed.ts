import type { Logger } from '../app/logger-port.js';
import type { EventRepository } from '../app/store-ports.js';
import type { CredentialCheck, LiveFeed, WatchCredential } from '../app/watch-ports.js';
import { RotorError } from '../domain/errors.js';
import type { WatchSelection } from '../domain/expiry.js';
import {
  DEFAULT_WATCH_STREAM_CAPS,
  exceededWatchStreamCap,
  watchStreamCapError,
  type WatchStreamCap,
  type WatchStreamCaps,
} from '../domain/watch-stream-caps.js';
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
  /** Reads whether a watcher's bearer token still authenticates (src/app/watch.ts checkCredential). */
  checkCredential: CredentialCheck;
  /** Most streams per bearer token, per owner id and in this process (default DEFAULT_WATCH_STREAM_CAPS). */
  streamCaps?: WatchStreamCaps;
}

/** A bearer token that streams were authorized with, followed once for all of them. */
interface FollowedCredential {
  readonly tokenId: string;
  readonly familyId: string;
  readonly ownerId: string;
  /** When it stops authenticating, as last checked (Infinity until a check answers). */
  until: number;
  readonly subs: Set<Subscription>;
  checking: boolean;
  again: boolean;
}

const PAGE = 1000;

/** How streams end when the feed cannot read the log (src/store/database-errors.ts said `unavailable`). */
const DATABASE_LOST = new RotorError(
  'unavailable',
  'database unavailable; reconnect with after_sequence set to the last sequence received',
);

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
  /** The bearer tokens of the watchers, by token id and by family. */
  private readonly credentials = new Map<string, FollowedCredential>();
  private readonly credentialsByFamily = new Map<string, Set<FollowedCredential>>();
  /** Open streams by the owner id of their bearer (per bearer: `credentials`' `subs`; in all: `subs`). */
  private readonly streamsByOwner = new Map<string, number>();
  private readonly caps: WatchStreamCaps;
  /** Streams refused by each cap. */
  private readonly refused: Record<WatchStreamCap, number> = { token: 0, owner: 0, process: 0 };
  /** Bearers found no longer valid, ended after the next read: the events that say so go first. */
  private readonly toEnd = new Map<FollowedCredential, RotorError>();
  private eventsRead = 0;
  private readFailures = 0;
  private overflows = 0;
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
    /** The feed reads the log's tail and nothing else. */
    private readonly events: Pick<EventRepository, 'latestSequence' | 'tail'>,
    private readonly now: Clock,
    private readonly log: Logger,
    private readonly options: EventFeedOptions,
  ) {
    this.caps = options.streamCaps ?? DEFAULT_WATCH_STREAM_CAPS;
  }

  /** Starts at the end of the log, with the poll and heartbeat timers (one each for all watchers). */
  async start(): Promise<void> {
    this.position = await this.events.latestSequence();
    this.pollTimer = setInterval(() => this.read(), this.options.pollIntervalMs).unref();
    const tick = Math.max(100, Math.min(1000, Math.floor(this.options.heartbeatMs / 3)));
    this.heartbeatTimer = setInterval(() => this.heartbeats(), tick).unref();
  }

  /**
   * For GET /metrics: open watchers, events read from the log and dispatched, failed reads,
   * watchers ended for falling behind, streams refused by each cap.
   */
  stats(): {
    watchers: number;
    eventsRead: number;
    readFailures: number;
    overflows: number;
    refused: Readonly<Record<WatchStreamCap, number>>;
  } {
    return {
      watchers: this.subs.size,
      eventsRead: this.eventsRead,
      readFailures: this.readFailures,
      overflows: this.overflows,
      refused: { ...this.refused },
    };
  }

  get watchers(): number {
    return this.subs.size;
  }

  subscribe(
    selection: WatchSelection,
    thresholdsSeconds: readonly number[],
    credential: WatchCredential,
  ): Subscription {
    if (this.closed) throw new RotorError('unavailable', 'server is shutting down; reconnect to another replica');
    // Counted here, where every stream of either port joins and every ending leaves (detach).
    const cap = exceededWatchStreamCap(
      {
        token: this.credentials.get(credential.tokenId)?.subs.size ?? 0,
        owner: this.streamsByOwner.get(credential.ownerId) ?? 0,
        process: this.subs.size,
      },
      this.caps,
    );
    if (cap !== undefined) {
      this.refused[cap]++;
      throw watchStreamCapError(cap, this.caps);
    }
    const key = thresholdsSeconds.join(',');
    let thresholds = this.thresholdSets.get(key);
    if (!thresholds) {
      thresholds = new Set(thresholdsSeconds);
      this.thresholdSets.set(key, thresholds);
    }
    const sub = new Subscription(
      selection,
      credential.tokenId,
      thresholds,
      this.position,
      this.options.bufferEvents,
      (s) => this.detach(s),
      () => void this.overflows++,
    );
    this.subs.add(sub);
    for (const [index, key] of this.keysOf(selection)) {
      let set = index.get(key);
      if (!set) {
        set = new Set();
        index.set(key, set);
      }
      set.add(sub);
    }
    this.follow(sub, credential);
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
    const reason = new RotorError(
      'unavailable',
      'server is shutting down; reconnect with after_sequence set to the last sequence received',
    );
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
    // Bearers found invalid before this read began: their streams end once it has offered its events.
    const ending = [...this.toEnd];
    this.toEnd.clear();
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
        this.eventsRead += rows.length;
        for (const e of rows) {
          this.position = e.sequence;
          this.dispatch(e);
        }
        if (rows.length < PAGE) return;
      }
    } catch (e) {
      this.readFailures++;
      this.log.warn('event feed read failed; retrying on the next poll', {
        error: e instanceof Error ? e.message : String(e),
      });
      // The database is gone: end the streams so clients resume elsewhere (or here, later).
      if (e instanceof RotorError && e.code === 'unavailable') this.interrupt(DATABASE_LOST);
    } finally {
      for (const [c, reason] of ending) for (const s of [...c.subs]) s.endAfterQueued(reason);
    }
  }

  private dispatch(e: WatchedEvent): void {
    // One item for every watcher: with thousands of them, per-watcher copies would be garbage.
    const item = { kind: 'event', event: e } as const;
    for (const set of [this.byToken.get(e.tokenId), this.byOwner.get(e.ownerId), this.byFamily.get(e.familyId)]) {
      if (set) for (const s of set) s.offer(item);
    }
    // A change in the family of a watcher's bearer (its revocation, a rotation that starts or
    // ends an overlap window, its successor's revocation, the family's) may end that bearer.
    // Checked after the offers, so the events that say so reach the watchers first.
    if (e.type !== 'expiring_soon') {
      const followed = this.credentialsByFamily.get(e.familyId);
      if (followed) for (const c of followed) this.check(c);
    }
  }

  private follow(sub: Subscription, credential: WatchCredential): void {
    let c = this.credentials.get(credential.tokenId);
    if (!c) {
      c = {
        tokenId: credential.tokenId,
        familyId: credential.familyId,
        ownerId: credential.ownerId,
        until: Infinity,
        subs: new Set(),
        checking: false,
        again: false,
      };
      this.credentials.set(c.tokenId, c);
      let family = this.credentialsByFamily.get(c.familyId);
      if (!family) {
        family = new Set();
        this.credentialsByFamily.set(c.familyId, family);
      }
      family.add(c);
      // Learn when it stops authenticating, for the clock (expiry, the end of an overlap window).
      this.check(c);
    }
    c.subs.add(sub);
    this.streamsByOwner.set(c.ownerId, (this.streamsByOwner.get(c.ownerId) ?? 0) + 1);
  }

  private unfollow(sub: Subscription): void {
    const c = this.credentials.get(sub.credentialId);
    if (!c?.subs.delete(sub)) return;
    const owned = (this.streamsByOwner.get(c.ownerId) ?? 1) - 1;
    if (owned > 0) this.streamsByOwner.set(c.ownerId, owned);
    else this.streamsByOwner.delete(c.ownerId);
    if (c.subs.size > 0) return;
    this.credentials.delete(c.tokenId);
    const family = this.credentialsByFamily.get(c.familyId);
    family?.delete(c);
    if (family?.size === 0) this.credentialsByFamily.delete(c.familyId);
  }

  /** Reads whether `c` still authenticates; one read at a time per credential, calls during it cause one more. */
  private check(c: FollowedCredential): void {
    if (this.closed) return;
    if (c.checking) {
      c.again = true;
      return;
    }
    c.checking = true;
    this.options
      .checkCredential(c.tokenId)
      .then(
        (r) => {
          c.until = r.until;
          if (r.problem === undefined) return;
          // The change committed before this check read it: the next read of the log offers its
          // events, and only then do the streams end (poll()).
          this.toEnd.set(c, new RotorError('unauthenticated', `bearer ${r.problem}; reconnect with a valid token`));
          this.read();
        },
        (e: unknown) => {
          this.log.warn('could not check the bearer token of WatchExpiry streams; checking again on its next event', {
            token_id: c.tokenId,
            error: e instanceof Error ? e.message : String(e),
          });
        },
      )
      .finally(() => {
        c.checking = false;
        if (c.again && this.credentials.get(c.tokenId) === c) {
          c.again = false;
          this.check(c);
        }
      });
  }

  private heartbeats(): void {
    const t = Date.now();
    const at = this.now();
    // A bearer whose time is up (expiry, the end of an overlap window) is checked, and so ended.
    for (const c of this.credentials.values()) if (at >= c.until) this.check(c);
    for (const s of this.subs) {
      if (s.live && s.pending === 0 && t - s.idleSince >= this.options.heartbeatMs) s.heartbeat(this.position, at);
    }
  }

  private detach(sub: Subscription): void {
    if (!this.subs.delete(sub)) return;
    this.unfollow(sub);
    for (const [index, key] of this.keysOf(sub.selection)) {
      const set = index.get(key);
      set?.delete(sub);
      if (set?.size === 0) index.delete(key);
    }
  }

  private keysOf(selection: WatchSelection): [Map<string, Set<Subscription>>, string][] {
    switch (selection.kind) {
      case 'tokens':
        return [...new Set(selection.tokenIds)].map((id) => [this.byToken, id]);
      case 'owner':
        return [[this.byOwner, selection.ownerId]];
      case 'family':
        return [[this.byFamily, selection.familyId]];
    }
  }
}
