import type { Knex } from 'knex';

/**
 * Workload identity (docs/workload-identity.md). A token's workload binding lives in its policy (the `policy` JSON
 * column, inherited by successors), so the tokens table is unchanged. This adds:
 * - `token_events.act`: the verified workload (`{"iss","sub"}` JSON) that proved a rotation or
 *   obtained a token by federation; never the JWT itself;
 * - `workload_jtis`: the replay cache of accepted workload JWTs, one row per SHA-256 digest of
 *   issuer and `jti` until the JWT expires. The primary key makes "first use" atomic across
 *   replicas sharing the database.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('token_events', (t) => {
    t.text('act').nullable();
  });
  await knex.schema.createTable('workload_jtis', (t) => {
    t.string('jti_digest', 64).primary();
    t.bigInteger('expires_at').notNullable().index();
    /** Digest of the idempotency key of the first use: a retry of that request may present the JWT again. */
    t.string('retry_key_digest', 64).nullable();
    /** Random per insert: tells the inserter apart from a concurrent one that lost. */
    t.string('nonce', 32).notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('workload_jtis');
  await knex.schema.alterTable('token_events', (t) => {
    t.dropColumn('act');
  });
}
