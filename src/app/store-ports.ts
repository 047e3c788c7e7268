import type { RevokeReason, TokenRecord, TokenState } from '../domain/token.js';
import type { WatchSelection } from '../domain/expiry.js';
import type { NewTokenEvent, TokenEvent, TokenEventType, WatchedEvent } from '../domain/token-event.js';
import type { TokenKind } from '../domain/token-kind.js';

/** The writes of one rotation (docs/rotation.md rule 6), for `Store.commitRotation`. */
export interface RotationCommit {
  currentId: string;
  successor: TokenRecord;
  rotationKeyDigest: string | null;
  /** Read once the transaction has begun (rule 2: a token that expired while the call waited loses). */
  clock: () => number;
  /** The events to append last, as every transaction appends its events, for that commit time. */
  events: (now: number) => readonly NewTokenEvent[];
}

/** The keyed digests a token row stores (docs/server-key.md). */
export type DigestField = 'secretDigest' | 'rotationKeyDigest';

/** Filters of ListTokens; every field optional. */
export interface TokenFilter {
  ownerId?: string;
  kind?: TokenKind;
  familyId?: string;
  state?: TokenState;
}

/** Filters of ListEvents (src/app/audit.ts); every field optional, combined with AND. */
export interface EventQuery {
  tokenId?: string;
  familyId?: string;
  /** The owner id of the event's token (events of tokens deleted by retention have none). */
  ownerId?: string;
  types?: readonly string[];
  /** occurred_at >= since */
  since?: number;
  /** occurred_at < until */
  until?: number;
  newestFirst: boolean;
  /** Keyset position: the last sequence of the previous page. */
  afterSequence?: number;
}

/** Keyset position for pagination: the last row of the previous page. */
export interface PageCursor {
  createdAt: number;
  id: string;
}

/** Storage of tokens. Implementations: src/store/token-repository.ts. */
export interface TokenRepository {
  findById(id: string): Promise<TokenRecord | undefined>;
  findByDigest(secretDigest: string): Promise<TokenRecord | undefined>;
  /**
   * The rows `findById` / `findByDigest` would answer from an in-process cache right now, without
   * waiting (undefined: not cached, read with a find); absent where reads are not cached.
   */
  cachedById?(id: string): TokenRecord | undefined;
  cachedByDigest?(secretDigest: string): TokenRecord | undefined;
  /**
   * The token whose stored digest is one of `secretDigests` (the digests of one secret under the
   * older server keys, docs/server-key.md); one query, tried only after `findByDigest` missed.
   */
  findByAnyDigest(secretDigests: readonly string[]): Promise<TokenRecord | undefined>;
  /**
   * Replaces a digest made under an older server key by the current key's digest of the same
   * secret or idempotency key (the caller just proved it knows the plaintext), only while the row
   * still holds `from`. False when it no longer does (another replica got there first).
   */
  redigest(id: string, field: DigestField, from: string, to: string): Promise<boolean>;
  /** The first token of a family (the widest scopes of it); undefined for an unknown family. */
  findFamilyRoot(familyId: string): Promise<TokenRecord | undefined>;
  insert(token: TokenRecord): Promise<void>;
  /**
   * Compare-and-set of docs/rotation.md rule 6: marks `id` rotated only while it is neither revoked nor
   * expired at `now`. False when another transaction got there first (or the token expired).
   */
  markRotated(id: string, successorId: string, rotationKeyDigest: string | null, now: number): Promise<boolean>;
  /** Revokes one token that is not revoked or rotated yet. False if it was. */
  revoke(id: string, reason: RevokeReason, now: number): Promise<boolean>;
  /** Ends a rotated token's overlap window now; it stays rotated, so reuse detection still applies. */
  endOverlap(id: string, now: number): Promise<boolean>;
  /**
   * Revokes every member of a family that is not yet revoked (rotated members included) in one
   * statement; returns the ids it revoked. Run it in a transaction that holds the family's lock.
   */
  revokeFamily(familyId: string, reason: RevokeReason, now: number): Promise<string[]>;
  /**
   * Lineage (docs/rotation.md, "Lineage and cascade"): the distinct families with a member whose
   * `parent_id` is one of `parentIds`.
   */
  childFamiliesOfTokens(parentIds: readonly string[]): Promise<string[]>;
  /** The distinct families with a member whose parent is a member of one of `familyIds`. */
  childFamiliesOfFamilies(familyIds: readonly string[]): Promise<string[]>;
  /** Every member of these families that a revocation would revoke: not revoked yet, or rotated. */
  revocableMembers(familyIds: readonly string[]): Promise<{ id: string; familyId: string }[]>;
  /**
   * A cascade batch, under the families' locks: revokes every member of `familyIds` not revoked
   * yet (rotated members included) with reason `cascade`, and sets `cascade_revoked_at` on every
   * member that lacks it. Returns the members it revoked, and every member it changed.
   */
  revokeFamiliesCascade(
    familyIds: readonly string[],
    now: number,
  ): Promise<{ revoked: { id: string; familyId: string }[]; changed: string[] }>;
  /** Sets `cascade_revoked_at` on the tokens (or every member of the family) that lack it; returns their ids. */
  markCascade(target: { ids: readonly string[] } | { familyId: string }, now: number): Promise<string[]>;
  /**
   * Retire on first use: clears a successor's `retire_predecessor_until` if still set; true for
   * the one call that cleared it (docs/rotation.md, "Retire on first use").
   */
  clearRetirePending(id: string): Promise<boolean>;
  list(filter: TokenFilter, now: number, limit: number, after: PageCursor | undefined): Promise<TokenRecord[]>;
  /**
   * Records a use of `token`; implementations may skip the write when its last use is recent,
   * and then answer `undefined` (no promise: the hot path allocates nothing for a skipped write).
   */
  touchLastUsed(token: TokenRecord, now: number): Promise<void> | undefined;
  /** True when some unexpired, unrevoked token holds the scope. */
  existsActiveWithScope(scope: string, now: number): Promise<boolean>;
  /** Every unexpired, unrevoked token that holds the scope (`rotor recover-admin`). */
  listActiveWithScope(scope: string, now: number): Promise<TokenRecord[]>;
  /**
   * Retention (src/expiry/retention.ts): examines up to `limit` tokens that ended (expired, or
   * revoked or rotated) before `endedBefore`, after `after` in the pass's order, and deletes those
   * whose whole family ended before it too; a family with a member that ended later, or that is
   * still usable, keeps every row (docs/rotation.md, "Retention"). `next` is where the following
   * batch starts; undefined when the pass has examined every candidate.
   */
  deleteEnded(q: EndedTokenBatch): Promise<{ deletedIds: string[]; next: EndedTokenCursor | undefined }>;
  /**
   * Records that a federated token was issued to a workload (`workloadKey`: its federation rule
   * and JWT `sub`, hashed), for the rule's `max_active_tokens` (src/app/federation-service.ts).
   */
  recordWorkload(tokenId: string, workloadKey: string, createdAt: number): Promise<void>;
  /**
   * The live (neither revoked nor expired at `now`) tokens issued to a workload, oldest first;
   * forgets the records of its ended ones. Run it in a transaction holding the workload's lock.
   */
  liveOfWorkload(workloadKey: string, now: number): Promise<{ id: string; familyId: string }[]>;
}

/** One batch of the retention's token deletes. */
export interface EndedTokenBatch {
  endedBefore: number;
  limit: number;
  /** Undefined: the first batch of a pass. */
  after: EndedTokenCursor | undefined;
}

/**
 * Position of a retention pass over ended tokens: first those that expired before the cutoff
 * (by expiry), then those revoked or rotated before it that expire after it (by revocation time);
 * `last` is the last row examined, undefined at the start of a phase.
 */
export interface EndedTokenCursor {
  phase: 'expired' | 'revoked';
  last: { at: number; id: string } | undefined;
}

/** The append-only event log. Implementation: src/store/event-repository.ts. */
export interface EventRepository {
  /**
   * Appends events. Inside a transaction, make this its last write: on PostgreSQL drawing a
   * sequence takes the event-order lock (shared) until commit (migration
   * 20261127_051_pg_event_commit_order), and readers wait for it to settle the log.
   */
  append(events: readonly NewTokenEvent[]): Promise<void>;
  /** How many events of `type` the log holds for `tokenId`, by reason (the wrong retry keys of rule 3). */
  countByReason(tokenId: string, type: TokenEventType): Promise<Partial<Record<string, number>>>;
  /** Events after `afterSequence`, oldest first. */
  list(filter: { tokenId?: string; familyId?: string; afterSequence?: number }, limit: number): Promise<TokenEvent[]>;
  /**
   * The audit trail (ListEvents): events matching `query`, in sequence order (descending with
   * `newestFirst`), strictly past `query.afterSequence` in that order, with their token's owner;
   * only up to the sequence `latestSequence` would answer, so paging never skips an event that
   * commits later.
   */
  audit(query: EventQuery, limit: number): Promise<WatchedEvent[]>;
  /**
   * The newest sequence up to which the log is complete (0 when empty): no event with a lower
   * sequence can still commit. SQLite: the highest sequence. PostgreSQL: the last number drawn,
   * once every transaction that drew one up to it has ended.
   */
  latestSequence(): Promise<number>;
  /**
   * Every event after `afterSequence`, oldest first, with its token's owner and expiry (the live
   * feed); only up to the sequence `latestSequence` would answer, so a hole in what it returns is final.
   */
  tail(afterSequence: number, limit: number): Promise<WatchedEvent[]>;
  /** Events of a watch selection in (afterSequence, upToSequence], oldest first (resume replay). */
  forSelection(
    selection: WatchSelection,
    afterSequence: number,
    upToSequence: number,
    limit: number,
  ): Promise<WatchedEvent[]>;
  /**
   * Appends one `expiring_soon` per live token whose expiry lies in (from, to], whose life spans
   * more than the threshold, and which has none for this threshold yet; insert-if-absent on the
   * unique key, so concurrent schedulers write each at most once. Returns how many it wrote.
   */
  appendExpiringSoon(q: ExpiringSoonScan): Promise<number>;
  /** Appends one `expired` per live (not rotated or revoked) token that expired in (from, to]; insert-if-absent. */
  appendExpired(q: ExpiredScan): Promise<number>;
  /**
   * Retention: deletes the next events of the log written before `before`, at most `limit`, as a
   * prefix of the log, and moves `deletedThrough` to the last sequence of that prefix. Scheduler
   * events of a token that still exists and is neither revoked nor rotated stay (the scheduler
   * would write them again, src/expiry/scheduler.ts); `deleteReleased` takes them later.
   * `more`: the batch was full, call again.
   */
  deleteWrittenBefore(q: { before: number; limit: number }): Promise<{ deleted: number; more: boolean }>;
  /**
   * Retention: examines up to `limit` events kept at or below `deletedThrough`, after sequence
   * `after`, and deletes those whose token is now gone, revoked or rotated. `next`: where the
   * following batch starts; undefined when none is left.
   */
  deleteReleased(q: { limit: number; after: number }): Promise<{ deleted: number; next: number | undefined }>;
  /**
   * The highest sequence up to which retention may have deleted events (0: none ever deleted).
   * A replay after a lower sequence could have holes.
   */
  deletedThrough(): Promise<number>;
}

/** One EXPIRING_SOON pass over live tokens expiring in `(from, to]`, for one threshold; `now` is the events' time. */
export interface ExpiringSoonScan {
  thresholdSeconds: number;
  from: number;
  to: number;
  now: number;
  limit: number;
}

/** One EXPIRED pass over live tokens that expired in `(from, to]`. */
export interface ExpiredScan {
  from: number;
  to: number;
  limit: number;
}

/** The repositories bound to one connection or transaction. */
export interface Repositories {
  tokens: TokenRepository;
  events: EventRepository;
}

/** Storage as the application sees it: repositories plus a unit of work. */
export interface Store extends Repositories {
  /**
   * Runs `work` in one database transaction; it commits when `work` resolves. Transactions that
   * pass the same `lock` name never overlap (check-then-insert without a unique key to lean on).
   * Transactions that pass the same `family` never overlap either: every change to a family
   * passes its id (docs/rotation.md, "Changes to one family are serialised"), so a revocation that
   * reads the live members cannot miss a successor that a concurrent rotation commits. With
   * `families` it takes the lock of each (a cascade batch), in one order, so two never deadlock.
   */
  transaction<T>(
    work: (tx: Repositories) => Promise<T>,
    options?: { lock?: string; family?: string; families?: readonly string[] },
  ): Promise<T>;
  /**
   * One rotation's writes in a transaction of their own, under the lock of the successor's family
   * (as `transaction` with `family`): `markRotated`, then `insert` of the successor, then `append`
   * of the events, exactly as `transaction` would run them through the repositories. False when
   * the compare-and-set lost (nothing is written).
   */
  commitRotation(commit: RotationCommit): Promise<boolean>;
  /**
   * Runs `work` only if no other process runs work of the same `name` on this database right now
   * (PostgreSQL: a session advisory lock held for the whole of `work`, tried, not waited for);
   * `ran: false` when another one does. `work` gets transactions of its own to run its batches in,
   * each committed on its own. SQLite serves one process, so `work` always runs there.
   */
  runExclusive<T>(
    name: string,
    work: (transaction: TransactionRunner) => Promise<T>,
  ): Promise<{ ran: true; value: T } | { ran: false }>;
  close(): Promise<void>;
}

/** Runs one short transaction, as `Store.transaction` does. */
export type TransactionRunner = <T>(work: (tx: Repositories) => Promise<T>) => Promise<T>;
