/**
 * The SQL of the retention job (src/expiry/retention.ts), one text for SQLite and PostgreSQL,
 * exported so test/store/retention-plan.test.ts can EXPLAIN exactly what runs. Every statement
 * reads through an index: tokens by expiry, by (revoked_at, expires_at), by family and by id;
 * events by sequence (the primary key) only, so no index on the log's hot insert path is needed.
 */

/** A statement as sent. */
export interface RetentionStatement {
  sql: string;
  bindings: (string | number)[];
}

/** A candidate row of the token pass: `at` is the column the phase orders by. */
export interface RetentionRow {
  id: string;
  family_id: string;
  at: number | string;
}

/** The name of the event log's mark in `retention_marks` (migration 20261207_061_retention). */
export const EVENTS_MARK = 'token_events_deleted_through';

/** The rows of a raw result on either driver (SQLite: an array; pg: `{ rows }`). */
export function rowsOf<T>(result: unknown): T[] {
  if (Array.isArray(result)) return result as T[];
  return (result as { rows?: T[] } | undefined)?.rows ?? [];
}

const placeholders = (n: number) => Array<string>(n).fill('?').join(', ');

/**
 * The next `limit` tokens that ended before `cutoff`, after `last`. Phase `expired`: expired
 * before the cutoff, by expiry (index on `expires_at`). Phase `revoked`: revoked or rotated
 * before the cutoff but expiring after it, by revocation time (index `tokens_live_expiry`).
 * Together they cover every token with min(expires_at, revoked_at) < cutoff exactly once.
 */
export function endedCandidatesStatement(
  phase: 'expired' | 'revoked',
  cutoff: number,
  last: { at: number; id: string } | undefined,
  limit: number,
): RetentionStatement {
  const col = phase === 'expired' ? 'expires_at' : 'revoked_at';
  const where = phase === 'expired' ? ['expires_at < ?'] : ['revoked_at < ?', 'expires_at >= ?'];
  const bindings: (string | number)[] = phase === 'expired' ? [cutoff] : [cutoff, cutoff];
  if (last !== undefined) {
    where.push(`${col} >= ?`, `(${col} > ? OR id > ?)`);
    bindings.push(last.at, last.at, last.id);
  }
  bindings.push(limit);
  return {
    sql: `SELECT id, family_id, ${col} AS at FROM tokens WHERE ${where.join(' AND ')} ORDER BY ${col}, id LIMIT ?`,
    bindings,
  };
}

/** Which of `families` have a member that has not ended, or ended at or after `cutoff` (index on `family_id`). */
export function liveFamiliesStatement(families: readonly string[], cutoff: number): RetentionStatement {
  return {
    sql: `SELECT DISTINCT family_id FROM tokens
       WHERE family_id IN (${placeholders(families.length)}) AND expires_at >= ? AND (revoked_at IS NULL OR revoked_at >= ?)`,
    bindings: [...families, cutoff, cutoff],
  };
}

/** Deletes the named tokens that ended before `cutoff`; returns the ids it deleted. */
export function deleteEndedStatement(ids: readonly string[], cutoff: number): RetentionStatement {
  return {
    sql: `DELETE FROM tokens WHERE id IN (${placeholders(ids.length)}) AND (expires_at < ? OR revoked_at < ?) RETURNING id`,
    bindings: [...ids, cutoff, cutoff],
  };
}

/**
 * A scheduler event the scheduler would write again if it were deleted: its token still exists
 * and is neither revoked nor rotated (the scheduler's selection, src/store/event-repository.ts).
 * `e` is the alias of `token_events`.
 */
const RESCHEDULABLE = `e.type IN ('expiring_soon', 'expired') AND EXISTS (SELECT 1 FROM tokens t WHERE t.id = e.token_id AND t.revoked_at IS NULL)`;

/** The next `limit` events after `after`, by sequence. */
export function eventPageStatement(after: number, limit: number): RetentionStatement {
  return {
    sql: `SELECT e.sequence, e.type, e.occurred_at FROM token_events e WHERE e.sequence > ? ORDER BY e.sequence LIMIT ?`,
    bindings: [after, limit],
  };
}

/** The `occurred_at` of the first event after `after` that is not `expired` (see `writtenBefore`). */
export function lookAheadStatement(after: number): RetentionStatement {
  return {
    sql: `SELECT e.occurred_at FROM token_events e WHERE e.sequence > ? AND e.type <> 'expired' ORDER BY e.sequence LIMIT 1`,
    bindings: [after],
  };
}

/** Deletes the events in (`after`, `through`] but the reschedulable ones; returns their sequences. */
export function deleteEventRangeStatement(after: number, through: number): RetentionStatement {
  return {
    sql: `DELETE FROM token_events WHERE sequence IN (
         SELECT e.sequence FROM token_events e WHERE e.sequence > ? AND e.sequence <= ? AND NOT (${RESCHEDULABLE}))
       RETURNING sequence`,
    bindings: [after, through],
  };
}

/** Scheduler events kept at or below the mark, after `after`, by sequence: what `deleteReleased` checks again. */
export function keptEventsStatement(through: number, after: number, limit: number): RetentionStatement {
  return {
    sql: `SELECT e.sequence, e.token_id FROM token_events e WHERE e.sequence > ? AND e.sequence <= ? ORDER BY e.sequence LIMIT ?`,
    bindings: [after, through, limit],
  };
}

/** Which of `ids` still exist neither revoked nor rotated (their scheduler events stay). */
export function unrevokedTokensStatement(ids: readonly string[]): RetentionStatement {
  return {
    sql: `SELECT id FROM tokens WHERE id IN (${placeholders(ids.length)}) AND revoked_at IS NULL`,
    bindings: [...ids],
  };
}

/** Deletes the events with these sequences; returns the sequences it deleted. */
export function deleteEventsStatement(sequences: readonly number[]): RetentionStatement {
  return {
    sql: `DELETE FROM token_events WHERE sequence IN (${placeholders(sequences.length)}) RETURNING sequence`,
    bindings: [...sequences],
  };
}

/** Reads a mark (no row: 0). */
export function readMarkStatement(name: string): RetentionStatement {
  return { sql: `SELECT value FROM retention_marks WHERE name = ?`, bindings: [name] };
}

/** Moves a mark forward, never back (two writers racing keep the higher value). */
export function raiseMarkStatement(name: string, value: number): RetentionStatement {
  return {
    sql: `INSERT INTO retention_marks (name, value) VALUES (?, ?)
       ON CONFLICT (name) DO UPDATE SET value = CASE WHEN excluded.value > retention_marks.value THEN excluded.value ELSE retention_marks.value END`,
    bindings: [name, value],
  };
}
