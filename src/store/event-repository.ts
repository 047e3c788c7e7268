import type { Knex } from 'knex';
import type { EventQuery, EventRepository, ExpiredScan, ExpiringSoonScan } from '../app/store-ports.js';
import type { WatchSelection } from '../domain/expiry.js';
import type { NewTokenEvent, TokenEvent, TokenEventType, WatchedEvent } from '../domain/token-event.js';
import type { WorkloadActor } from '../domain/workload-binding.js';
import { writtenBefore } from '../domain/retention.js';
import { returnedCount, toEventRow } from './rotation-statements.js';
import {
  EVENTS_MARK,
  deleteEventRangeStatement,
  deleteEventsStatement,
  eventPageStatement,
  keptEventsStatement,
  lookAheadStatement,
  raiseMarkStatement,
  readMarkStatement,
  rowsOf,
  unrevokedTokensStatement,
  type RetentionStatement,
} from './retention-statements.js';

/** What the store counts of an appended event (the metrics' `rotor_token_events_total`). */
export type EventKind = Pick<NewTokenEvent, 'type' | 'reason'>;

const EXPIRING_SOON: EventKind = { type: 'expiring_soon', reason: null };
const EXPIRED: EventKind = { type: 'expired', reason: null };

/** The `token_events` table row. */
interface EventRow {
  sequence: number | string;
  type: string;
  token_id: string;
  family_id: string;
  successor_id: string | null;
  actor: string;
  peer: string | null;
  reason: string | null;
  occurred_at: number | string;
  unique_key: string | null;
  act: string | null;
  threshold_seconds: number | string | null;
}

/** An event row joined with its token's owner and expiry. */
interface WatchedRow extends EventRow {
  owner_id: string | null;
  expires_at: number | string | null;
}

function toEvent(row: EventRow): TokenEvent {
  return {
    sequence: Number(row.sequence),
    type: row.type as TokenEventType,
    tokenId: row.token_id,
    familyId: row.family_id,
    successorId: row.successor_id,
    actor: row.actor,
    peer: row.peer,
    reason: row.reason,
    occurredAt: Number(row.occurred_at),
    act: row.act === null || row.act === undefined ? null : (JSON.parse(row.act) as WorkloadActor),
    thresholdSeconds: row.threshold_seconds === null ? null : Number(row.threshold_seconds),
  };
}

function toWatched(row: WatchedRow): WatchedEvent {
  return { ...toEvent(row), ownerId: row.owner_id ?? '', expiresAt: Number(row.expires_at ?? 0) };
}

/** Columns of a scheduled event, in the order the INSERT … SELECT statements below fill them. */
const SCHEDULED_COLUMNS =
  'type, token_id, family_id, successor_id, actor, peer, reason, occurred_at, unique_key, threshold_seconds';

/** The actor the log records for events the expiry scheduler writes. */
const SCHEDULER_ACTOR = 'scheduler';

/** knex repository of the append-only `token_events` log: insert and read, never update. */
export class KnexEventRepository implements EventRepository {
  constructor(
    private readonly db: Knex | Knex.Transaction,
    /** Told of the events appended, by type and reason (the store counts them and wakes the live feed after commit). */
    private readonly appended: (events: readonly EventKind[]) => void = () => {},
    /** Share concurrent latestSequence() reads (the pool's repository, never a transaction's). */
    private readonly shareReads = false,
  ) {}

  private inFlightLatest: Promise<number> | undefined;

  async append(events: readonly NewTokenEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.db('token_events').insert(events.map(toEventRow));
    this.appended(events);
  }

  async countByReason(tokenId: string, type: TokenEventType): Promise<Partial<Record<string, number>>> {
    const rows = (await this.db('token_events')
      .where({ token_id: tokenId, type })
      .groupBy('reason')
      .select('reason')
      .count({ n: '*' })) as {
      reason: string | null;
      n: number | string;
    }[];
    return Object.fromEntries(rows.map((r) => [r.reason ?? '', Number(r.n)]));
  }

  async list(
    filter: { tokenId?: string; familyId?: string; afterSequence?: number },
    limit: number,
  ): Promise<TokenEvent[]> {
    const q = this.db<EventRow>('token_events').select('*');
    if (filter.tokenId !== undefined) q.where('token_id', filter.tokenId);
    if (filter.familyId !== undefined) q.where('family_id', filter.familyId);
    if (filter.afterSequence !== undefined) q.where('sequence', '>', filter.afterSequence);
    const rows = await q.orderBy('sequence').limit(limit);
    return rows.map(toEvent);
  }

  /**
   * Outside a transaction, concurrent callers share one query: thousands of WatchExpiry streams
   * opening at once then cost one read, not one each. A shared answer may be a moment older than
   * the call, which every caller tolerates (it bounds what counts as already seen).
   */
  latestSequence(): Promise<number> {
    if (this.inFlightLatest) return this.inFlightLatest;
    const q = this.readLatest();
    if (this.shareReads) {
      const shared = q.finally(() => (this.inFlightLatest = undefined));
      // The first caller handles q's failure; without this the shared copy, which no later caller
      // may ever take, rejects unhandled (Node's default then ends the process in a database outage).
      shared.catch(() => undefined);
      this.inFlightLatest = shared;
    }
    return q;
  }

  private async readLatest(): Promise<number> {
    if (this.postgres) return this.settledSequence();
    const row = (await this.db('token_events').max({ seq: 'sequence' }).first()) as
      | { seq: number | string | null }
      | undefined;
    return Number(row?.seq ?? 0);
  }

  private get postgres(): boolean {
    return this.db.client.config.client === 'pg';
  }

  /**
   * PostgreSQL: the highest sequence up to which the log is final (migration
   * 20261127_051_pg_event_commit_order). Reads the last number drawn, then takes the event lock
   * exclusively for this one statement, which waits until every transaction that drew a number up
   * to it has ended. Statements after this one see every event up to it that ever commits; a
   * missing number below it is a rolled-back one. (OFFSET 0 keeps the read before the lock.)
   */
  private async settledSequence(): Promise<number> {
    const result = (await this.db.raw(
      `SELECT s.drawn, pg_advisory_xact_lock(hashtext('rotor:token_events')) AS locked
       FROM (SELECT pg_sequence_last_value(pg_get_serial_sequence('token_events', 'sequence')::regclass) AS drawn OFFSET 0) s`,
    )) as { rows: { drawn: string | number | null }[] };
    return Number(result.rows[0]?.drawn ?? 0);
  }

  private watched() {
    return this.db('token_events as e')
      .leftJoin('tokens as t', 't.id', 'e.token_id')
      .select('e.*', 't.owner_id', 't.expires_at');
  }

  /** Events after `afterSequence`; on PostgreSQL only up to the settled sequence (nothing lower can still commit). */
  async tail(afterSequence: number, limit: number): Promise<WatchedEvent[]> {
    const q = this.watched().where('e.sequence', '>', afterSequence);
    if (this.postgres) {
      const settled = await this.settledSequence();
      if (settled <= afterSequence) return [];
      q.andWhere('e.sequence', '<=', settled);
    }
    const rows = (await q.orderBy('e.sequence').limit(limit)) as WatchedRow[];
    return rows.map(toWatched);
  }

  async audit(query: EventQuery, limit: number): Promise<WatchedEvent[]> {
    const q = this.watched();
    if (query.tokenId !== undefined) q.where('e.token_id', query.tokenId);
    if (query.familyId !== undefined) q.where('e.family_id', query.familyId);
    if (query.ownerId !== undefined) q.where('t.owner_id', query.ownerId);
    if (query.types !== undefined && query.types.length > 0) q.whereIn('e.type', [...query.types]);
    if (query.since !== undefined) q.where('e.occurred_at', '>=', query.since);
    if (query.until !== undefined) q.where('e.occurred_at', '<', query.until);
    if (query.afterSequence !== undefined) q.where('e.sequence', query.newestFirst ? '<' : '>', query.afterSequence);
    if (this.postgres) q.where('e.sequence', '<=', await this.settledSequence());
    const rows = (await q.orderBy('e.sequence', query.newestFirst ? 'desc' : 'asc').limit(limit)) as WatchedRow[];
    return rows.map(toWatched);
  }

  async forSelection(
    selection: WatchSelection,
    afterSequence: number,
    upToSequence: number,
    limit: number,
  ): Promise<WatchedEvent[]> {
    const q = this.watched().where('e.sequence', '>', afterSequence).andWhere('e.sequence', '<=', upToSequence);
    switch (selection.kind) {
      case 'tokens':
        q.whereIn('e.token_id', [...selection.tokenIds]);
        break;
      case 'owner':
        q.where('t.owner_id', selection.ownerId);
        break;
      case 'family':
        q.where('e.family_id', selection.familyId);
        break;
    }
    const rows = (await q.orderBy('e.sequence').limit(limit)) as WatchedRow[];
    return rows.map(toWatched);
  }

  async appendExpiringSoon(q: ExpiringSoonScan): Promise<number> {
    return this.appendScheduled(expiringSoonStatement(q), EXPIRING_SOON);
  }

  async appendExpired(q: ExpiredScan): Promise<number> {
    return this.appendScheduled(expiredStatement(q), EXPIRED);
  }

  /**
   * One retention batch, in the caller's transaction: reads the page after the mark, finds the
   * prefix written before the cutoff (`writtenBefore`, looking ahead past a run of `expired`
   * events when the page ends in one), deletes it but the reschedulable events, and raises the
   * mark to its end. An event with a sequence at or below the mark that has not committed yet
   * would have to come from a transaction open for longer than the retention period; statement
   * timeouts end every transaction long before.
   */
  async deleteWrittenBefore(q: { before: number; limit: number }): Promise<{ deleted: number; more: boolean }> {
    const mark = await this.deletedThrough();
    const page = rowsOf<{ sequence: number | string; type: string; occurred_at: number | string }>(
      await this.run(eventPageStatement(mark, q.limit)),
    ).map((r) => ({
      sequence: Number(r.sequence),
      type: r.type as TokenEventType,
      occurredAt: Number(r.occurred_at),
    }));
    let { count, open } = writtenBefore(page, q.before);
    if (open && page.length === q.limit && count < page.length) {
      const next = rowsOf<{ occurred_at: number | string }>(
        await this.run(lookAheadStatement(page[page.length - 1]!.sequence)),
      )[0];
      if (next !== undefined && Number(next.occurred_at) < q.before) count = page.length;
    }
    if (count === 0) return { deleted: 0, more: false };
    const through = page[count - 1]!.sequence;
    const deleted = returnedCount(await this.run(deleteEventRangeStatement(mark, through)));
    await this.run(raiseMarkStatement(EVENTS_MARK, through));
    return { deleted, more: count === page.length && page.length === q.limit };
  }

  /**
   * Reads the events kept at or below the mark (only reschedulable ones were, so they are few)
   * by primary key, looks their tokens up by primary key, and deletes those whose token is gone,
   * revoked or rotated: no join a planner could turn into a read of every live token.
   */
  async deleteReleased(q: { limit: number; after: number }): Promise<{ deleted: number; next: number | undefined }> {
    const mark = await this.deletedThrough();
    const kept = rowsOf<{ sequence: number | string; token_id: string }>(
      await this.run(keptEventsStatement(mark, q.after, q.limit)),
    );
    if (kept.length === 0) return { deleted: 0, next: undefined };
    const ids = [...new Set(kept.map((k) => k.token_id))];
    const live = new Set(rowsOf<{ id: string }>(await this.run(unrevokedTokensStatement(ids))).map((r) => r.id));
    const released = kept.filter((k) => !live.has(k.token_id)).map((k) => Number(k.sequence));
    const deleted = released.length === 0 ? 0 : returnedCount(await this.run(deleteEventsStatement(released)));
    return { deleted, next: kept.length < q.limit ? undefined : Number(kept[kept.length - 1]!.sequence) };
  }

  async deletedThrough(): Promise<number> {
    const row = rowsOf<{ value: number | string }>(await this.run(readMarkStatement(EVENTS_MARK)))[0];
    return row === undefined ? 0 : Number(row.value);
  }

  private run(s: RetentionStatement): Promise<unknown> {
    return this.db.raw(s.sql, s.bindings);
  }

  private async appendScheduled(statement: ScheduledStatement, kind: EventKind): Promise<number> {
    const n = returnedCount(await this.db.raw(statement.sql, statement.bindings));
    if (n > 0) this.appended(Array<EventKind>(n).fill(kind));
    return n;
  }
}

/** A scheduler statement as sent: exported so a test can EXPLAIN exactly what runs (test/store/expiry-scan-plan.test.ts). */
export interface ScheduledStatement {
  sql: string;
  bindings: (string | number)[];
}

/**
 * Inserts the missing EXPIRING_SOON rows of live tokens due in the range, found through an index
 * on expiry (SQLite picks (revoked_at, expires_at), PostgreSQL (expires_at); the plan test checks
 * both); a token whose whole lifetime is shorter than the threshold gets none.
 */
export function expiringSoonStatement(q: ExpiringSoonScan): ScheduledStatement {
  const suffix = `:${q.thresholdSeconds}`;
  return {
    sql: `INSERT INTO token_events (${SCHEDULED_COLUMNS})
       SELECT 'expiring_soon', t.id, t.family_id, NULL, '${SCHEDULER_ACTOR}', NULL, NULL, CAST(? AS BIGINT), 'expiring_soon:' || t.id || ?, CAST(? AS INTEGER)
       FROM tokens t
       WHERE t.revoked_at IS NULL AND t.expires_at > ? AND t.expires_at <= ? AND t.expires_at - t.created_at > ?
         AND NOT EXISTS (SELECT 1 FROM token_events x WHERE x.unique_key = 'expiring_soon:' || t.id || ?)
       ORDER BY t.expires_at
       LIMIT ?
       ON CONFLICT (unique_key) DO NOTHING
       RETURNING sequence`,
    bindings: [q.now, suffix, q.thresholdSeconds, q.from, q.to, q.thresholdSeconds * 1000, suffix, q.limit],
  };
}

/** Inserts the missing EXPIRED rows of live tokens that expired in the range, through an index on expiry. */
export function expiredStatement(q: ExpiredScan): ScheduledStatement {
  return {
    sql: `INSERT INTO token_events (${SCHEDULED_COLUMNS})
       SELECT 'expired', t.id, t.family_id, NULL, '${SCHEDULER_ACTOR}', NULL, NULL, t.expires_at, 'expired:' || t.id, NULL
       FROM tokens t
       WHERE t.revoked_at IS NULL AND t.expires_at > ? AND t.expires_at <= ?
         AND NOT EXISTS (SELECT 1 FROM token_events x WHERE x.unique_key = 'expired:' || t.id)
       ORDER BY t.expires_at
       LIMIT ?
       ON CONFLICT (unique_key) DO NOTHING
       RETURNING sequence`,
    bindings: [q.from, q.to, q.limit],
  };
}
