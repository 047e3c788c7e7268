import type { Knex } from 'knex';
import type {
  DigestField,
  EndedTokenBatch,
  EndedTokenCursor,
  PageCursor,
  TokenFilter,
  TokenRepository,
} from '../app/store-ports.js';
import type { RevokeReason, TokenRecord } from '../domain/token.js';
import { MARK_ROTATED_SQL, markRotatedValues, returnedCount } from './rotation-statements.js';
import {
  deleteEndedStatement,
  endedCandidatesStatement,
  liveFamiliesStatement,
  rowsOf,
  type RetentionRow,
  type RetentionStatement,
} from './retention-statements.js';
import { toRecord, toRow, type TokenRow } from './token-row.js';

/** A stored last use younger than this is not written again (it is an audit hint, not a counter). */
export const LAST_USED_RESOLUTION_MS = 60_000;

/** knex repository of the `tokens` table; `db` is the pool or a transaction. */
export class KnexTokenRepository implements TokenRepository {
  constructor(private readonly db: Knex | Knex.Transaction) {}

  private table() {
    return this.db<TokenRow>('tokens');
  }

  async findById(id: string): Promise<TokenRecord | undefined> {
    const row = await this.table().where({ id }).first();
    return row ? toRecord(row) : undefined;
  }

  async findByDigest(secretDigest: string): Promise<TokenRecord | undefined> {
    const row = await this.table().where({ secret_digest: secretDigest }).first();
    return row ? toRecord(row) : undefined;
  }

  async findByAnyDigest(secretDigests: readonly string[]): Promise<TokenRecord | undefined> {
    if (secretDigests.length === 0) return undefined;
    const row = await this.table().whereIn('secret_digest', secretDigests).first();
    return row ? toRecord(row) : undefined;
  }

  async redigest(id: string, field: DigestField, from: string, to: string): Promise<boolean> {
    const column = field === 'secretDigest' ? 'secret_digest' : 'rotation_key_digest';
    const n = await this.table()
      .where({ id, [column]: from })
      .update({ [column]: to });
    return n === 1;
  }

  async findFamilyRoot(familyId: string): Promise<TokenRecord | undefined> {
    const row = await this.table().where({ family_id: familyId }).whereNull('previous_id').first();
    return row ? toRecord(row) : undefined;
  }

  async insert(token: TokenRecord): Promise<void> {
    await this.table().insert(toRow(token));
  }

  async markRotated(id: string, successorId: string, rotationKeyDigest: string | null, now: number): Promise<boolean> {
    return (
      returnedCount(
        await this.db.raw(
          MARK_ROTATED_SQL,
          markRotatedValues(id, successorId, rotationKeyDigest, now) as Knex.RawBinding[],
        ),
      ) === 1
    );
  }

  async revoke(id: string, reason: RevokeReason, now: number): Promise<boolean> {
    const n = await this.table()
      .where({ id })
      .whereNull('revoked_at')
      .update({ revoked_at: now, revoke_reason: reason });
    return n === 1;
  }

  async endOverlap(id: string, now: number): Promise<boolean> {
    const n = await this.table()
      .where({ id, revoke_reason: 'rotated' })
      .whereNull('overlap_ended_at')
      .update({ overlap_ended_at: now });
    return n === 1;
  }

  /**
   * Revokes every live or rotated member in one `UPDATE … RETURNING`. `revoked_at` becomes the
   * family's revocation time (the answer to its holders, and the retention clock); a rotated
   * member's `rotated_at` is left as it is.
   */
  async revokeFamily(familyId: string, reason: RevokeReason, now: number): Promise<string[]> {
    const rows: { id: string }[] = await this.table()
      .where({ family_id: familyId })
      .andWhere((w) => w.whereNull('revoked_at').orWhere('revoke_reason', 'rotated'))
      .update({ revoked_at: now, revoke_reason: reason }, ['id']);
    return rows.map((r) => r.id);
  }

  async childFamiliesOfTokens(parentIds: readonly string[]): Promise<string[]> {
    if (parentIds.length === 0) return [];
    const rows: { family_id: string }[] = await this.table().distinct('family_id').whereIn('parent_id', parentIds);
    return rows.map((r) => r.family_id);
  }

  async childFamiliesOfFamilies(familyIds: readonly string[]): Promise<string[]> {
    if (familyIds.length === 0) return [];
    const rows: { family_id: string }[] = await this.table()
      .distinct('family_id')
      .whereIn('parent_id', (q) => q.select('id').from('tokens').whereIn('family_id', familyIds));
    return rows.map((r) => r.family_id);
  }

  async revocableMembers(familyIds: readonly string[]): Promise<{ id: string; familyId: string }[]> {
    if (familyIds.length === 0) return [];
    const rows: { id: string; family_id: string }[] = await this.table()
      .select('id', 'family_id')
      .whereIn('family_id', familyIds)
      .andWhere((w) => w.whereNull('revoked_at').orWhere('revoke_reason', 'rotated'))
      .orderBy('id');
    return rows.map((r) => ({ id: r.id, familyId: r.family_id }));
  }

  async revokeFamiliesCascade(
    familyIds: readonly string[],
    now: number,
  ): Promise<{ revoked: { id: string; familyId: string }[]; changed: string[] }> {
    if (familyIds.length === 0) return { revoked: [], changed: [] };
    const rows: { id: string; family_id: string }[] = await this.table()
      .whereIn('family_id', familyIds)
      .andWhere((w) => w.whereNull('revoked_at').orWhere('revoke_reason', 'rotated'))
      .update({ revoked_at: now, revoke_reason: 'cascade', cascade_revoked_at: now }, ['id', 'family_id']);
    const marked: { id: string }[] = await this.table()
      .whereIn('family_id', familyIds)
      .whereNull('cascade_revoked_at')
      .update({ cascade_revoked_at: now }, ['id']);
    return {
      revoked: rows.map((r) => ({ id: r.id, familyId: r.family_id })),
      changed: [...rows.map((r) => r.id), ...marked.map((r) => r.id)],
    };
  }

  async markCascade(target: { ids: readonly string[] } | { familyId: string }, now: number): Promise<string[]> {
    const q = this.table().whereNull('cascade_revoked_at');
    if ('ids' in target) q.whereIn('id', target.ids);
    else q.where('family_id', target.familyId);
    const rows: { id: string }[] = await q.update({ cascade_revoked_at: now }, ['id']);
    return rows.map((r) => r.id);
  }

  async clearRetirePending(id: string): Promise<boolean> {
    const n = await this.table()
      .where({ id })
      .whereNotNull('retire_predecessor_until')
      .update({ retire_predecessor_until: null });
    return n === 1;
  }

  async list(filter: TokenFilter, now: number, limit: number, after: PageCursor | undefined): Promise<TokenRecord[]> {
    const q = this.table().select('*');
    if (filter.ownerId !== undefined) q.where('owner_id', filter.ownerId);
    if (filter.kind !== undefined) q.where('kind', filter.kind);
    if (filter.familyId !== undefined) q.where('family_id', filter.familyId);
    switch (filter.state) {
      case 'active':
        q.whereNull('revoked_at').where('expires_at', '>', now);
        break;
      case 'expired':
        q.whereNull('revoked_at').where('expires_at', '<=', now);
        break;
      case 'rotated':
        q.where('revoke_reason', 'rotated');
        break;
      case 'revoked':
        q.whereNotNull('revoked_at').whereNot('revoke_reason', 'rotated');
        break;
      case undefined:
        break;
    }
    if (after) {
      q.where((w) =>
        w
          .where('created_at', '>', after.createdAt)
          .orWhere((x) => x.where('created_at', after.createdAt).where('id', '>', after.id)),
      );
    }
    const rows = await q.orderBy([{ column: 'created_at' }, { column: 'id' }]).limit(limit);
    return rows.map(toRecord);
  }

  async touchLastUsed(token: TokenRecord, now: number): Promise<void> {
    await this.table()
      .where({ id: token.id })
      .andWhere((q) => q.whereNull('last_used_at').orWhere('last_used_at', '<', now - LAST_USED_RESOLUTION_MS))
      .update({ last_used_at: now });
  }

  async existsActiveWithScope(scope: string, now: number): Promise<boolean> {
    const rows = await this.table()
      .select('scopes')
      .whereNull('revoked_at')
      .where('expires_at', '>', now)
      .where('scopes', 'like', `%${JSON.stringify(scope)}%`);
    return rows.some((r) => (JSON.parse(r.scopes) as string[]).includes(scope));
  }

  async listActiveWithScope(scope: string, now: number): Promise<TokenRecord[]> {
    const rows = await this.table()
      .select('*')
      .whereNull('revoked_at')
      .where('expires_at', '>', now)
      .where('scopes', 'like', `%${JSON.stringify(scope)}%`)
      .orderBy('id');
    return rows.map(toRecord).filter((t) => t.scopes.includes(scope));
  }

  /**
   * One retention batch, in the caller's transaction: the next `limit` candidates in the pass's
   * order, the families among them that still have a member which ended at or after the cutoff
   * (or has not ended), and the delete of the other candidates. A family whose members all ended
   * before the cutoff stays that way (none can be rotated or un-revoked), so no row lock is
   * needed; the delete re-checks each row's own end, since a reuse detection may revoke it again.
   */
  async deleteEnded(q: EndedTokenBatch): Promise<{ deletedIds: string[]; next: EndedTokenCursor | undefined }> {
    const phase = q.after?.phase ?? 'expired';
    const candidates = rowsOf<RetentionRow>(
      await this.run(endedCandidatesStatement(phase, q.endedBefore, q.after?.last, q.limit)),
    );
    if (candidates.length === 0) {
      return { deletedIds: [], next: phase === 'expired' ? { phase: 'revoked', last: undefined } : undefined };
    }
    const families = [...new Set(candidates.map((c) => c.family_id))];
    const live = new Set(
      rowsOf<{ family_id: string }>(await this.run(liveFamiliesStatement(families, q.endedBefore))).map(
        (r) => r.family_id,
      ),
    );
    const doomed = candidates.filter((c) => !live.has(c.family_id)).map((c) => c.id);
    const deletedIds =
      doomed.length === 0
        ? []
        : rowsOf<{ id: string }>(await this.run(deleteEndedStatement(doomed, q.endedBefore))).map((r) => r.id);
    const lastRow = candidates[candidates.length - 1]!;
    const last = { at: Number(lastRow.at), id: lastRow.id };
    let next: EndedTokenCursor | undefined = { phase, last };
    if (candidates.length < q.limit) next = phase === 'expired' ? { phase: 'revoked', last: undefined } : undefined;
    return { deletedIds, next };
  }

  private run(s: RetentionStatement): Promise<unknown> {
    return this.db.raw(s.sql, s.bindings);
  }

  async recordWorkload(tokenId: string, workloadKey: string, createdAt: number): Promise<void> {
    await this.db('federated_tokens').insert({ token_id: tokenId, workload_key: workloadKey, created_at: createdAt });
  }

  async liveOfWorkload(workloadKey: string, now: number): Promise<{ id: string; familyId: string }[]> {
    const rows = await this.db('federated_tokens as f')
      .leftJoin('tokens as t', 't.id', 'f.token_id')
      .where('f.workload_key', workloadKey)
      .orderBy([{ column: 'f.created_at' }, { column: 'f.token_id' }])
      .select<{ id: string; family_id: string | null; revoked_at: unknown; expires_at: unknown }[]>(
        'f.token_id as id',
        't.family_id',
        't.revoked_at',
        't.expires_at',
      );
    const live = rows.filter((r) => r.family_id !== null && r.revoked_at === null && Number(r.expires_at) > now);
    const ended = rows.filter((r) => !live.includes(r)).map((r) => r.id);
    if (ended.length > 0) await this.db('federated_tokens').whereIn('token_id', ended).delete();
    return live.map((r) => ({ id: r.id, familyId: r.family_id! }));
  }
}
