import type { Knex } from 'knex';

/**
 * Lineage and retire on first use (docs/rotation.md, "Lineage and cascade" and "Retire on first
 * use"), written once for both engines:
 *
 * - `tokens.parent_id`: the token that authenticated the call that created the token's family
 *   (successors keep it); null for bootstrap, federation, recovery and every row older than this
 *   migration. Indexed, because a cascade finds the children of a batch of tokens by it.
 * - `tokens.cascade_revoked_at`: when a revocation with cascade reached the token. Authentication
 *   walks a token's `parent_id` chain and refuses it when an ancestor has it set, so a cascade
 *   that is still revoking descendants batch by batch already shuts all of them out.
 * - `tokens.retire_predecessor_until`: on a successor minted under `retire_on_first_use`, until
 *   when its first use retires its predecessor; cleared by that first use, so later uses write
 *   nothing.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tokens', (t) => {
    t.string('parent_id', 64).nullable();
    t.bigInteger('cascade_revoked_at').nullable();
    t.bigInteger('retire_predecessor_until').nullable();
    t.index(['parent_id'], 'tokens_parent_id');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tokens', (t) => {
    t.dropIndex(['parent_id'], 'tokens_parent_id');
    t.dropColumn('retire_predecessor_until');
    t.dropColumn('cascade_revoked_at');
    t.dropColumn('parent_id');
  });
}
