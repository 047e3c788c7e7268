import type { Knex } from 'knex';

/**
 * WatchExpiry (docs/watch-expiry.md): the expiry scheduler's events in the log. `unique_key` makes each scheduled event
 * exist at most once ("expiring_soon:<token>:<threshold seconds>", "expired:<token>"), whichever
 * process or restart inserts it; ordinary events leave it NULL (NULLs never collide on SQLite or
 * PostgreSQL). `threshold_seconds` is the threshold an EXPIRING_SOON event reports. The scheduler
 * finds due tokens through the index on (revoked_at, expires_at): live tokens in an expiry range.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('token_events', (t) => {
    t.string('unique_key', 128).nullable().unique({ indexName: 'token_events_unique_key' });
    t.integer('threshold_seconds').nullable();
  });
  await knex.schema.alterTable('tokens', (t) => {
    t.index(['revoked_at', 'expires_at'], 'tokens_live_expiry');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tokens', (t) => {
    t.dropIndex(['revoked_at', 'expires_at'], 'tokens_live_expiry');
  });
  await knex.schema.alterTable('token_events', (t) => {
    t.dropUnique(['unique_key'], 'token_events_unique_key');
    t.dropColumn('threshold_seconds');
    t.dropColumn('unique_key');
  });
}
