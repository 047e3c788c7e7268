import type { Knex } from 'knex';

/**
 * PostgreSQL only: every statement that inserts into `token_events` also sends a NOTIFY on the
 * `rotor_token_events` channel (src/store/pg-notify.ts), delivered when its transaction commits
 * and dropped when it rolls back. Its payload is the highest sequence the statement inserted, a
 * space, and the distinct token ids of the inserted events joined by commas (or `*` when they
 * would not fit PostgreSQL's 8000-byte payload limit). Other replicas drop those token rows from
 * their caches, and watchers wake up and then read the event log, which stays the source of
 * truth: a missed notification only delays, never loses, an event.
 *
 * Why a trigger and not a `pg_notify` call from the repository: it costs no extra round trip on
 * the rotation path, and every writer of events (rotation, revocation, the expiry scheduler, a
 * future one) notifies without remembering to.
 *
 * Dialect difference: SQLite has neither NOTIFY nor several server processes sharing one
 * database, so this migration does nothing there (it is still recorded as applied, keeping the
 * two engines' migration lists identical).
 */
export async function up(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  await knex.raw(`
    CREATE FUNCTION rotor_notify_token_events() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      top bigint;
      ids text;
    BEGIN
      SELECT max(sequence), string_agg(DISTINCT token_id, ',') INTO top, ids FROM inserted_events;
      IF top IS NULL THEN
        RETURN NULL;
      END IF;
      IF octet_length(ids) > 7900 THEN
        ids := '*';
      END IF;
      PERFORM pg_notify('rotor_token_events', top::text || ' ' || ids);
      RETURN NULL;
    END
    $$`);
  await knex.raw(`
    CREATE TRIGGER token_events_notify
      AFTER INSERT ON token_events
      REFERENCING NEW TABLE AS inserted_events
      FOR EACH STATEMENT EXECUTE FUNCTION rotor_notify_token_events()`);
}

export async function down(knex: Knex): Promise<void> {
  if (knex.client.config.client !== 'pg') return;
  await knex.raw('DROP TRIGGER IF EXISTS token_events_notify ON token_events');
  await knex.raw('DROP FUNCTION IF EXISTS rotor_notify_token_events()');
}
