/**
 * The three writes of a rotation commit (docs/rotation.md rule 6) as SQL text. The compare-and-set runs
 * two ways: through knex inside a transaction (`KnexTokenRepository.markRotated`, the
 * authoritative path) and on the driver by `DirectRotationWriter` (the fast path). The two INSERTs
 * are the fast path's; the knex path inserts the same rows (`toRow`, `toEventRow`) with knex's
 * builder. The same text on
 * both engines: plain lower-case identifiers, `?` placeholders (knex turns them into `$n` for pg,
 * and so does `pgPlaceholders` for the direct path), `RETURNING` (SQLite 3.35+, PostgreSQL).
 */
import type { NewTokenEvent } from '../domain/token-event.js';
import type { TokenRecord } from '../domain/token.js';
import { toRow, type TokenRow } from './token-row.js';

/**
 * Compare-and-set: marks the token rotated only while it is neither revoked nor expired at `now`.
 * It returns the id it changed, so "did I win" reads the same on both drivers and both paths.
 * `rotated_at` gets the same instant as `revoked_at` and, unlike it, survives a later revocation
 * of the family.
 */
export const MARK_ROTATED_SQL =
  'update tokens set revoked_at = ?, rotated_at = ?, revoke_reason = ?, successor_id = ?, rotation_key_digest = ?, ' +
  'last_used_at = ? where id = ? and revoked_at is null and expires_at > ? returning id';

export function markRotatedValues(
  id: string,
  successorId: string,
  rotationKeyDigest: string | null,
  now: number,
): unknown[] {
  return [now, now, 'rotated', successorId, rotationKeyDigest, now, id, now];
}

/** Every column of `tokens`, in the order `INSERT_TOKEN_SQL` lists them; the values come from `toRow`. */
const TOKEN_COLUMNS: readonly (keyof TokenRow)[] = [
  'id',
  'family_id',
  'previous_id',
  'successor_id',
  'kind',
  'owner_id',
  'name',
  'description',
  'scopes',
  'audiences',
  'policy',
  'created_at',
  'expires_at',
  'last_used_at',
  'revoked_at',
  'revoke_reason',
  'rotated_at',
  'overlap_ended_at',
  'secret_digest',
  'display_prefix',
  'rotation_key_digest',
  'parent_id',
  'cascade_revoked_at',
  'retire_predecessor_until',
];

export const INSERT_TOKEN_SQL = `insert into tokens (${TOKEN_COLUMNS.join(', ')}) values (${TOKEN_COLUMNS.map(() => '?').join(', ')})`;

export function tokenValues(t: TokenRecord): unknown[] {
  const row = toRow(t);
  return TOKEN_COLUMNS.map((c) => row[c]);
}

/** The `token_events` row the log stores for an event (the sequence is the database's). */
export function toEventRow(e: NewTokenEvent) {
  return {
    type: e.type,
    token_id: e.tokenId,
    family_id: e.familyId,
    successor_id: e.successorId,
    actor: e.actor,
    peer: e.peer?.slice(0, 128) ?? null,
    reason: e.reason,
    occurred_at: e.occurredAt,
    act: e.act ? JSON.stringify({ iss: e.act.iss, sub: e.act.sub }) : null,
    threshold_seconds: e.thresholdSeconds ?? null,
  };
}

const EVENT_COLUMNS = Object.keys(
  toEventRow({
    type: 'created',
    tokenId: '',
    familyId: '',
    successorId: null,
    actor: '',
    peer: null,
    reason: null,
    occurredAt: 0,
  }),
) as (keyof ReturnType<typeof toEventRow>)[];

/** An INSERT of `count` events (one statement, so they get consecutive sequences). */
export function insertEventsSql(count: number): string {
  const tuple = `(${EVENT_COLUMNS.map(() => '?').join(', ')})`;
  return `insert into token_events (${EVENT_COLUMNS.join(', ')}) values ${Array.from({ length: count }, () => tuple).join(', ')}`;
}

export function eventValues(events: readonly NewTokenEvent[]): unknown[] {
  return events.flatMap((e) => {
    const row = toEventRow(e);
    return EVENT_COLUMNS.map((c) => row[c]);
  });
}

/** Number of rows a raw `… RETURNING` statement reported, on either driver. */
export function returnedCount(result: unknown): number {
  if (Array.isArray(result)) return result.length;
  const rows = (result as { rows?: unknown[] } | undefined)?.rows;
  return Array.isArray(rows) ? rows.length : 0;
}

/** `?` placeholders as pg's `$1, $2, …` (the statements above contain no `?` elsewhere). */
export function pgPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}
