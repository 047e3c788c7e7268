import type { Knex } from 'knex';

/**
 * PostgreSQL only: readers of the event log know up to which sequence it is complete.
 *
 * A `bigserial` number is drawn when a row is inserted, not when its transaction commits, so two
 * transactions can commit their events out of sequence order: a watcher that read sequence 11
 * and resumed "after 11" would never see 10 if its transaction committed a moment later. Here
 * the column's default draws the number through `rotor_next_event_sequence()`, which first takes
 * the advisory lock `hashtext('rotor:token_events')` in SHARED mode for the rest of the
 * transaction. Writers never wait for each other (shared locks do not conflict). A reader that
 * wants a horizon reads the sequence's last drawn value L and then takes the same lock in
 * EXCLUSIVE mode for one statement (src/store/event-repository.ts, `settledSequence`): that
 * returns once every transaction that drew a number up to L has committed or rolled back
 * (PostgreSQL makes a commit visible before it releases the transaction's locks). Everything
 * the reader reads afterwards up to L is final: a hole is a rolled-back number (a process
 * killed mid-rotation) or an `ON CONFLICT DO NOTHING` of the expiry scheduler, never an event
 * still to come. New writers queue behind a waiting reader, so it is not starved; they wait at
 * most as long as the writers already in flight take to commit.
 *
 * The lock is taken in the default, i.e. only when a row is really inserted (a scheduler pass
 * that finds nothing due takes none), by every writer, including ones that forget to ask for it.
 * Events must be the last thing a transaction writes (every use case appends them last): a
 * writer that holds the lock and then waits for a row lock would hold up readers, and could
 * deadlock with a writer that holds the row and is queued behind a reader. Cost:
 * bench/README.md ("Event order on PostgreSQL").
 *
 * Dialect difference: SQLite has one writer at a time and draws the number inside the write
 * transaction, so its commit order is sequence order already; nothing to do there (the migration
 * is still recorded, keeping both engines' migration lists identical).
 */
export async function up(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  const seq = (await knex.raw(`SELECT pg_get_serial_sequence('token_events', 'sequence') AS name`)) as {
    rows: { name: string }[];
  };
  const name = seq.rows[0]!.name;
  await knex.raw(`
    CREATE FUNCTION rotor_next_event_sequence() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      PERFORM pg_advisory_xact_lock_shared(hashtext('rotor:token_events'));
      RETURN nextval('${name}'::regclass);
    END
    $$`);
  await knex.raw('ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT rotor_next_event_sequence()');
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  const seq = (await knex.raw(`SELECT pg_get_serial_sequence('token_events', 'sequence') AS name`)) as {
    rows: { name: string }[];
  };
  await knex.raw(
    `ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT nextval('${seq.rows[0]!.name}'::regclass)`,
  );
  await knex.raw('DROP FUNCTION IF EXISTS rotor_next_event_sequence()');
}
