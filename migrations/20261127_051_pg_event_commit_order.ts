import type { Knex } from 'knex';

/**
 * PostgreSQL only: event transactions commit in sequence order.
 *
 * A `bigserial` number is drawn when a row is inserted, not when its transaction commits, so
 * without this two transactions could commit their events out of order: a watcher that read
 * sequence 11 and resumes "after 11" would never see 10 if its transaction committed a moment
 * later. Here the column's default draws the number through `rotor_next_event_sequence()`,
 * which first takes the transaction-level advisory lock `hashtext('rotor:token_events')` (the
 * naming of `Store.transaction`'s named locks) and holds it until the transaction ends. So:
 *
 * - the transaction that drew sequence n has committed or rolled back before any transaction
 *   draws a higher one; PostgreSQL makes a commit visible before it releases the transaction's
 *   locks, so a reader that sees sequence n also sees every committed lower one;
 * - a hole below the newest visible sequence is final: a rolled-back transaction, or an
 *   `ON CONFLICT DO NOTHING` of the expiry scheduler that drew a number and wrote nothing.
 *   Readers (the WatchExpiry feed, resume, snapshot positions) may skip it at once.
 *
 * The lock is taken in the default, i.e. only when a row is really inserted (a scheduler pass that
 * finds nothing due takes no lock), by every writer, including ones that forget to ask for it.
 * Event-writing transactions are serialised from their first event insert to their commit, so
 * events must be the last thing a transaction writes (every use case appends them last): a
 * transaction that holds the lock and then waits for a row lock could deadlock with one that
 * holds the row and waits for the lock. Cost: bench/README.md ("Commit order").
 *
 * Dialect difference: SQLite has one writer at a time and a sequence drawn inside the write
 * transaction, so commit order is sequence order already; nothing to do there (the migration is
 * still recorded, keeping both engines' migration lists identical).
 */
export async function up(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  const seq = (await knex.raw(`SELECT pg_get_serial_sequence('token_events', 'sequence') AS name`)) as { rows: { name: string }[] };
  const name = seq.rows[0]!.name;
  await knex.raw(`
    CREATE FUNCTION rotor_next_event_sequence() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock(hashtext('rotor:token_events'));
      RETURN nextval('${name}'::regclass);
    END
    $$`);
  await knex.raw('ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT rotor_next_event_sequence()');
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  const seq = (await knex.raw(`SELECT pg_get_serial_sequence('token_events', 'sequence') AS name`)) as { rows: { name: string }[] };
  await knex.raw(`ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT nextval('${seq.rows[0]!.name}'::regclass)`);
  await knex.raw('DROP FUNCTION IF EXISTS rotor_next_event_sequence()');
}
