import type { Knex } from 'knex';

/**
 * `tokens.rotated_at`: when a token was rotated, in a column of its own. Rotation used to be
 * recorded only as `revoked_at` with reason `rotated`, and revoking the family afterwards (reuse
 * detection, RevokeFamily) overwrote both, so a revoked family no longer said when each member
 * had been rotated. Existing rotated rows are backfilled from `revoked_at`; rows whose rotation
 * time was already overwritten cannot be recovered and stay null. Written once for both engines.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tokens', (t) => {
    t.bigInteger('rotated_at').nullable();
  });
  await knex('tokens')
    .where('revoke_reason', 'rotated')
    .update({ rotated_at: knex.ref('revoked_at') });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tokens', (t) => {
    t.dropColumn('rotated_at');
  });
}
