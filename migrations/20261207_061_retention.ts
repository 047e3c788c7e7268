import type { Knex } from 'knex';

/**
 * Retention (ROTOR_RETENTION_DAYS, src/expiry/retention.ts): `retention_marks` holds named
 * positions the job keeps between passes. `token_events_deleted_through` is the highest event
 * sequence it has deleted up to: events at or below it may be gone, so a watcher resuming with a
 * lower `after_sequence` is told so (OUT_OF_RANGE) instead of getting a replay with a hole.
 * Written once for both engines; no row means nothing was ever deleted.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('retention_marks', (t) => {
    t.string('name', 64).primary();
    t.bigInteger('value').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('retention_marks');
}
