import type { Knex } from 'knex';

/**
 * Core schema: tokens and the append-only event log. Written once for SQLite and PostgreSQL.
 * Times are integer milliseconds since the epoch (bigint), so both engines compare them the
 * same way and no time-zone conversion happens in the driver.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('tokens', (t) => {
    t.string('id', 64).primary();
    t.string('family_id', 64).notNullable().index();
    t.string('previous_id', 64).nullable();
    t.string('successor_id', 64).nullable();
    t.string('kind', 32).notNullable();
    t.string('owner_id', 128).notNullable();
    t.string('name', 128).notNullable();
    t.text('description').notNullable();
    t.text('scopes').notNullable();
    t.text('audiences').notNullable();
    t.text('policy').notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('expires_at').notNullable().index();
    t.bigInteger('last_used_at').nullable();
    t.bigInteger('revoked_at').nullable();
    /** When a rotated token's overlap was ended early (RevokeToken / RFC 7009 on it). */
    t.bigInteger('overlap_ended_at').nullable();
    t.string('revoke_reason', 32).nullable();
    t.string('secret_digest', 64).notNullable().unique();
    t.string('display_prefix', 32).notNullable();
    t.string('rotation_key_digest', 64).nullable();
    t.index(['owner_id', 'created_at', 'id']);
  });
  await knex.schema.createTable('token_events', (t) => {
    t.bigIncrements('sequence').primary();
    t.string('type', 32).notNullable();
    t.string('token_id', 64).notNullable().index();
    t.string('family_id', 64).notNullable().index();
    t.string('successor_id', 64).nullable();
    t.string('actor', 128).notNullable();
    t.string('peer', 128).nullable();
    t.string('reason', 64).nullable();
    t.bigInteger('occurred_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('token_events');
  await knex.schema.dropTable('tokens');
}
