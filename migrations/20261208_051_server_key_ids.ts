import type { Knex } from 'knex';

/**
 * `server_key.legacy_fingerprint`: the fingerprint of the server secret that made the rows written
 * before key ids existed ("legacy" digests and `v1` sealed signing keys, docs/server-key.md). Until
 * this migration the stored fingerprint was always that secret's (start-up refused any other), so it
 * is copied; from now on `fingerprint` follows the current key as replicas rotate it, and
 * `legacy_fingerprint` keeps naming the key the legacy rows depend on. Written once for both engines.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('server_key', (t) => {
    t.string('legacy_fingerprint', 128).nullable();
  });
  await knex('server_key').update({ legacy_fingerprint: knex.ref('fingerprint') });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('server_key', (t) => {
    t.dropColumn('legacy_fingerprint');
  });
}
