import type { Knex } from 'knex';

/**
 * Signing keys of JWT access tokens (docs/jwt-access-tokens.md, "Signing keys"). The private key
 * is stored only sealed (AES-256-GCM under a subkey of ROTOR_SECRET) and erased once the key has
 * left the JWKS. `slot` numbers the chain of keys; it is unique so that replicas racing to create
 * the next key agree on one. Times are integer milliseconds, as in the core schema.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('signing_keys', (t) => {
    t.string('kid', 64).primary();
    t.string('alg', 16).notNullable();
    t.integer('slot').notNullable().unique();
    t.text('public_jwk').notNullable();
    t.text('private_key_sealed').nullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('not_before').notNullable();
    t.bigInteger('retire_at').notNullable();
    /** The latest expiry of any token the key signed: it stays in the JWKS until then. */
    t.bigInteger('publish_until').notNullable().index();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('signing_keys');
}
