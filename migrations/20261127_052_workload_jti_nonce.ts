import type { Knex } from 'knex';

/**
 * Drops `workload_jtis.nonce`. It told the inserter of a replay-cache row apart from a concurrent
 * one that lost, with a second query reading the row back; the insert now says itself whether it
 * won (`INSERT … ON CONFLICT DO NOTHING RETURNING`, src/store/jti-repository.ts), on both engines.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('workload_jtis', (t) => {
    t.dropColumn('nonce');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('workload_jtis', (t) => {
    t.string('nonce', 32).notNullable().defaultTo('');
  });
}
