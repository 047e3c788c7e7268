import type { Knex } from 'knex';

/**
 * `server_key`: one row (`id` 1) holding a keyed fingerprint of the server secret
 * (HMAC-SHA-256 under the secret of a fixed label, src/runtime/server-key-check.ts), never the
 * secret and not reversible. Start-up writes it when absent and refuses a different secret
 * afterwards, so a replica with another ROTOR_SECRET (or another secret.key) stops at once
 * instead of recognising no token. Written once for both engines.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('server_key', (t) => {
    t.integer('id').primary();
    t.string('fingerprint', 128).notNullable();
    t.bigInteger('created_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('server_key');
}
