import type { WatchSelection } from '../domain/expiry.js';
import type { WatchedEvent } from '../domain/token-event.js';

/** What the live feed hands a watcher: an event of its selection, or a heartbeat. */
export type LiveItem =
  | { kind: 'event'; event: WatchedEvent }
  /** Carries the newest sequence this watcher is complete up to, and when it was sent. */
  | { kind: 'heartbeat'; sequence: number; at: number };

/** One watcher's place in the live feed. Implementation: src/expiry/subscription.ts. */
export interface LiveSubscription {
  /** The feed's position when the watcher joined: every later event of the selection is queued. */
  readonly liveFrom: number;
  /** Drops queued and future events at or below `sequence` (already sent by snapshot or replay). */
  skipThrough(sequence: number): void;
  /** Replay is over: the watcher may receive heartbeats now. */
  markLive(): void;
  /**
   * The next item; rejects with the reason when the subscription ended (overflow, shutdown,
   * close, or, once the items queued before it were taken, the end of its credential). An
   * iterator result, so a stream hands it on as it is.
   */
  next(): Promise<IteratorResult<LiveItem, never>>;
  close(): void;
}

/**
 * The bearer token a stream was authorized with: the stream lives as long as it authenticates,
 * and counts against the caps of this token and of its owner (src/domain/watch-stream-caps.ts).
 */
export interface WatchCredential {
  tokenId: string;
  familyId: string;
  ownerId: string;
}

/**
 * Whether a credential authenticates now, read fresh (not from the token cache): `until` is the
 * instant it stops (docs/rotation.md rules 2 and 7, `usableUntil`), `problem` why it no longer does.
 */
export type CredentialCheck = (tokenId: string) => Promise<{ until: number; problem?: string }>;

/** The shared live feed of the event log. Implementation: src/expiry/event-feed.ts. */
export interface LiveFeed {
  /**
   * `credential`: the bearer the stream was authorized with; when it stops authenticating, the
   * stream ends. Throws `resource_exhausted` when the stream would exceed a cap on open streams;
   * the slot is held until the subscription ends, however it ends.
   */
  subscribe(
    selection: WatchSelection,
    thresholdsSeconds: readonly number[],
    credential: WatchCredential,
  ): LiveSubscription;
}

/** What WatchExpiry needs beyond the AppContext: the feed and the thresholds the server schedules. */
export interface WatchRuntime {
  feed: LiveFeed;
  thresholdsSeconds: readonly number[];
}
