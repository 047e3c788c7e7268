import type { AppContext } from './context.js';
import { eventOf, type Who } from './token-service.js';

/**
 * Families revoked per transaction of a cascade, and looked up per lineage query (docs/rotation.md,
 * "Lineage and cascade"): small enough that no transaction holds many locks or runs long (each
 * is two UPDATEs and one multi-row event INSERT), large enough that 10,000 tokens take a few dozen.
 */
export const CASCADE_BATCH = 500;

/** At most this many ids in a dry run's answer (`truncated` says when there were more). */
export const DRY_RUN_LIST_LIMIT = 100_000;

/** Where a cascade starts: the children of these tokens (RevokeToken) or of these families' members. */
export type CascadeRoots = { tokenIds: readonly string[] } | { familyIds: readonly string[] };

/** What a cascade revoked, or with `dryRun` would revoke. */
export interface CascadeResult {
  count: number;
  /** Dry run only: the ids, at most `DRY_RUN_LIST_LIMIT`. */
  ids: string[];
  truncated: boolean;
}

/**
 * Revokes every family descended from `roots` (docs/rotation.md, "Lineage and cascade"), level
 * by level, in transactions of at most `CASCADE_BATCH` families each (under their family locks,
 * one `family_revoked` event with reason `cascade` per revoked token, the events last). The
 * caller has already marked the roots (`cascade_revoked_at`) in a transaction of its own: from
 * that commit on, every descendant is refused by the lineage walk of authentication
 * (`cascadeRevokedAncestor`), so the batches only make the state and the audit log say so.
 *
 * Re-running it is safe and finishes an interrupted run: families already revoked are found
 * again but change nothing. The tree of families is a tree (a family's parent is fixed when its
 * first token is created, and is older than it), so the walk ends; `seen` guards anyway.
 */
export async function cascadeRevoke(
  app: AppContext,
  who: Who,
  roots: CascadeRoots,
  now: number,
  dryRun: boolean,
): Promise<CascadeResult> {
  const result: CascadeResult = { count: 0, ids: [], truncated: false };
  const seen = new Set<string>();
  let frontier: string[] = [];
  if ('tokenIds' in roots) {
    for (const chunk of chunks(roots.tokenIds)) frontier.push(...(await app.store.tokens.childFamiliesOfTokens(chunk)));
  } else {
    for (const f of roots.familyIds) seen.add(f);
    for (const chunk of chunks(roots.familyIds))
      frontier.push(...(await app.store.tokens.childFamiliesOfFamilies(chunk)));
  }
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const chunk of chunks(frontier)) {
      const batch = chunk.filter((f) => !seen.has(f));
      if (batch.length === 0) continue;
      for (const f of batch) seen.add(f);
      if (dryRun) {
        const members = await app.store.tokens.revocableMembers(batch);
        result.count += members.length;
        for (const m of members) {
          if (result.ids.length < DRY_RUN_LIST_LIMIT) result.ids.push(m.id);
          else result.truncated = true;
        }
      } else {
        result.count += await app.store.transaction(
          async (tx) => {
            const { revoked } = await tx.tokens.revokeFamiliesCascade(batch, now);
            await tx.events.append(
              revoked.map((r) =>
                eventOf(who, {
                  type: 'family_revoked',
                  tokenId: r.id,
                  familyId: r.familyId,
                  successorId: null,
                  reason: 'cascade',
                  occurredAt: now,
                }),
              ),
            );
            return revoked.length;
          },
          { families: batch },
        );
      }
      next.push(...(await app.store.tokens.childFamiliesOfFamilies(batch)));
    }
    frontier = next;
  }
  return result;
}

function* chunks<T>(items: readonly T[]): Generator<T[]> {
  for (let i = 0; i < items.length; i += CASCADE_BATCH) yield items.slice(i, i + CASCADE_BATCH);
}
