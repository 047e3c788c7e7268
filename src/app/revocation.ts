import { requireManage } from '../domain/authorization.js';
import { RotorError, isRotorError } from '../domain/errors.js';
import { requireId } from '../domain/input-limits.js';
import { looksLikeJwt } from '../domain/jwt-access-token.js';
import { isUsable, tokenState, type TokenRecord } from '../domain/token.js';
import { findBySecret, successorForUse, type Caller } from './authenticate.js';
import { proveBoundToken, type DpopRequest } from './dpop.js';
import type { AppContext } from './context.js';
import { cascadeRevoke } from './cascade.js';
import type { Repositories } from './store-ports.js';
import { eventOf, whoIs, type Who } from './token-service.js';

/** RevokeToken / RevokeFamily options (docs/rotation.md, "Lineage and cascade"). */
export interface RevokeOptions {
  /** Also revoke every family descended from the revoked tokens. */
  cascade: boolean;
  /** Change nothing; list what would be revoked. */
  dryRun: boolean;
}

const PLAIN: RevokeOptions = { cascade: false, dryRun: false };

/** What RevokeToken did, or with `dryRun` would do. */
export interface RevokeTokenOutcome {
  token: TokenRecord;
  /** Descendants revoked by the cascade (would be, on a dry run). */
  cascadeCount: number;
  /** Dry run: the token itself (when it would change), then the descendants. */
  dryRunIds: string[];
  truncated: boolean;
}

/**
 * Revokes one token by id. Idempotent; a rotated token has its overlap ended instead. With
 * `cascade`, every family descended from it is revoked too (src/app/cascade.ts); the token is
 * marked first, in its own transaction, so its descendants stop authenticating at that commit.
 */
export async function revokeTokenWith(
  app: AppContext,
  caller: Caller,
  id: string,
  opts: RevokeOptions,
): Promise<RevokeTokenOutcome> {
  const token = await app.store.tokens.findById(requireId('id', id));
  if (!token) throw new RotorError('not_found', `token ${id} not found`);
  requireManage(caller.token, token);
  const who = whoIs(caller);
  if (opts.dryRun) {
    const now = app.now();
    const self = wouldRevoke(token, now, await successorForUse(app.store.tokens, token)) ? [token.id] : [];
    const c = opts.cascade ? await cascadeRevoke(app, who, { tokenIds: [token.id] }, now, true) : undefined;
    return {
      token,
      cascadeCount: c?.count ?? 0,
      dryRunIds: [...self, ...(c?.ids ?? [])],
      truncated: c?.truncated ?? false,
    };
  }
  const record = await revokeRecord(app, who, token, opts.cascade);
  const c = opts.cascade ? await cascadeRevoke(app, who, { tokenIds: [token.id] }, app.now(), false) : undefined;
  return { token: record, cascadeCount: c?.count ?? 0, dryRunIds: [], truncated: false };
}

/** RevokeToken without cascade: the token after the call. */
export async function revokeToken(app: AppContext, caller: Caller, id: string): Promise<TokenRecord> {
  return (await revokeTokenWith(app, caller, id, PLAIN)).token;
}

/** Whether revokeRecord would change the token now: revoke it, or end its overlap window. */
function wouldRevoke(token: TokenRecord, now: number, successor: TokenRecord | undefined): boolean {
  const state = tokenState(token, now);
  return (
    state === 'active' || (state === 'rotated' && isUsable(token, now, successor) && token.overlapEndedAt === null)
  );
}

/**
 * Revokes an active token. A rotated token stays rotated (so presenting it again is still
 * reuse, docs/rotation.md rule 3); if it still authenticates inside its overlap window, the window ends
 * now. Already revoked or expired tokens are left as they are. With `cascade` the token gets its
 * `cascade_revoked_at` mark in the same transaction, whatever its state.
 */
async function revokeRecord(app: AppContext, who: Who, token: TokenRecord, cascade = false): Promise<TokenRecord> {
  return app.store.transaction(
    async (tx) => {
      // Read again under the family's lock: the row may have been rotated since it was looked up.
      const now = app.now();
      const current = (await tx.tokens.findById(token.id)) ?? token;
      const successor = await successorForUse(tx.tokens, current);
      const state = tokenState(current, now);
      let reason: string | undefined;
      if (state === 'active' && (await tx.tokens.revoke(current.id, 'revoked', now))) reason = 'revoked';
      if (state === 'rotated' && isUsable(current, now, successor) && (await tx.tokens.endOverlap(current.id, now)))
        reason = 'overlap_ended';
      const marked = cascade && (await tx.tokens.markCascade({ ids: [current.id] }, now)).length > 0;
      if (reason === undefined) return marked ? ((await tx.tokens.findById(current.id)) ?? current) : current;
      await tx.events.append([
        eventOf(who, {
          type: 'revoked',
          tokenId: current.id,
          familyId: current.familyId,
          successorId: null,
          reason,
          occurredAt: now,
        }),
      ]);
      return (await tx.tokens.findById(current.id)) ?? current;
    },
    { family: token.familyId },
  );
}

/**
 * RFC 7009 §2: the holder revokes a token by presenting it. Possession is the authority; unknown
 * or malformed tokens are answered the same way as known ones (§2.2), so nothing leaks. A JWT
 * access token is refused with `unsupported_token_type` (§2.2.1): it cannot be revoked on its own.
 */
export async function revokeBySecret(
  app: AppContext,
  secret: string,
  peer: string | null,
  dpop?: DpopRequest,
): Promise<void> {
  if (looksLikeJwt(secret)) {
    throw new RotorError(
      'revocation_unsupported',
      `JWT access tokens cannot be revoked; they expire within ${app.jwt.ttlSeconds} s of issue. Revoke the Rotor token they were issued from`,
    );
  }
  let token: TokenRecord | undefined;
  try {
    token = await findBySecret(app, secret);
  } catch (e) {
    if (isRotorError(e) && e.code === 'invalid_token') return;
    throw e;
  }
  if (!token) return;
  // docs/dpop.md: a token bound to a key is revoked only by its key's holder, so a thief cannot
  // revoke the owner's token with a copied secret.
  await proveBoundToken(app, dpop, token, secret, 'subject');
  await revokeRecord(app, { actor: token.id, peer }, token);
}

/** What RevokeFamily did, or with `dryRun` would do. */
export interface RevokeFamilyOutcome {
  /** Members of the family revoked (would be). */
  revokedCount: number;
  /** Descendants revoked by the cascade (would be). */
  cascadeCount: number;
  /** Dry run: the family's members that would be revoked, then the descendants. */
  dryRunIds: string[];
  truncated: boolean;
}

/**
 * Revokes every member of a family (manual breach response); needs manage rights on its root.
 * With `cascade`, every family descended from any member is revoked too (src/app/cascade.ts).
 */
export async function revokeFamilyWith(
  app: AppContext,
  caller: Caller,
  familyId: string,
  opts: RevokeOptions,
): Promise<RevokeFamilyOutcome> {
  const root = await app.store.tokens.findFamilyRoot(requireId('family_id', familyId));
  if (!root) throw new RotorError('not_found', `family ${familyId} not found`);
  requireManage(caller.token, root);
  const who = whoIs(caller);
  const now = app.now();
  if (opts.dryRun) {
    const members = (await app.store.tokens.revocableMembers([familyId])).map((m) => m.id);
    const c = opts.cascade ? await cascadeRevoke(app, who, { familyIds: [familyId] }, now, true) : undefined;
    return {
      revokedCount: members.length,
      cascadeCount: c?.count ?? 0,
      dryRunIds: [...members, ...(c?.ids ?? [])],
      truncated: c?.truncated ?? false,
    };
  }
  const revokedCount = await app.store.transaction(
    (tx) => revokeFamilyIn(tx, who, familyId, 'family_revoked', now, opts.cascade),
    { family: familyId },
  );
  const c = opts.cascade ? await cascadeRevoke(app, who, { familyIds: [familyId] }, now, false) : undefined;
  return { revokedCount, cascadeCount: c?.count ?? 0, dryRunIds: [], truncated: false };
}

/** RevokeFamily without cascade: how many members it revoked. */
export async function revokeFamily(app: AppContext, caller: Caller, familyId: string): Promise<number> {
  return (await revokeFamilyWith(app, caller, familyId, PLAIN)).revokedCount;
}

/**
 * Revokes every live member of a family inside the caller's transaction, which must hold the
 * family's lock (`Store.transaction` with `family`), and logs one `family_revoked` event per
 * member (so a watcher of any member learns of it). With `cascade`, every member also gets its
 * `cascade_revoked_at` mark; the caller runs `cascadeRevoke` after the commit.
 */
export async function revokeFamilyIn(
  tx: Repositories,
  who: Who,
  familyId: string,
  reason: 'family_revoked' | 'reuse_detected',
  now: number,
  cascade = false,
): Promise<number> {
  const ids = await tx.tokens.revokeFamily(familyId, reason, now);
  // The mark that shuts out every descendant at this commit (src/app/cascade.ts does the rest).
  if (cascade) await tx.tokens.markCascade({ familyId }, now);
  await tx.events.append(
    ids.map((tokenId) =>
      eventOf(who, { type: 'family_revoked', tokenId, familyId, successorId: null, reason, occurredAt: now }),
    ),
  );
  return ids.length;
}
