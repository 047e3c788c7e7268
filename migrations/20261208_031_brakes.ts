import type { Knex } from 'knex';

/**
 * The brakes (docs/limits.md). Written once for both engines.
 *
 * - `rate_limit_counters`: one fixed-window counter per key (`peer:<address>`, `owner:<id>`,
 *   `family:<id>`), shared by every replica on PostgreSQL (src/store/rate-counter.ts); SQLite
 *   keeps its counters in memory and leaves the table empty. `reset_at` is indexed for the
 *   deletion of ended windows.
 * - `federated_tokens`: which workload (federation rule and JWT subject, as a SHA-256 key) each
 *   federated token was issued to, so a rule's `max_active_tokens` can find that workload's live
 *   tokens, oldest first (src/app/federation-service.ts). Kept apart from `tokens` so no token row
 *   changes shape.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('rate_limit_counters', (t) => {
    t.string('key', 300).primary();
    t.bigInteger('count').notNullable();
    t.bigInteger('reset_at').notNullable().index('rate_limit_counters_reset_at');
  });
  await knex.schema.createTable('federated_tokens', (t) => {
    t.string('token_id', 64).primary();
    t.string('workload_key', 64).notNullable();
    t.bigInteger('created_at').notNullable();
    t.index(['workload_key', 'created_at'], 'federated_tokens_workload');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('federated_tokens');
  await knex.schema.dropTable('rate_limit_counters');
}
