import { requireManage } from '../domain/authorization.js';
import { RotorError, isRotorError } from '../domain/errors.js';
import { requireId } from '../domain/input-limits.js';
import { looksLikeJwt } from '../domain/jwt-access-token.js';
import { isUsable, tokenState, type TokenRecord } from '../domain/token.js';
import { findBySecret, successorForUse, type Caller } from './authenticate.js';
import { proveBoundToken, type DpopRequest } from './dpop.js';
import type { AppContext } from './context.js';
import type { Repositories } from './store-ports.js';
import { eventOf, whoIs, type Who } from './token-service.js';

/** Revokes one token by id. Idempotent; a rotated token has its overlap ended instead. */
export async function revokeToken(app: AppContext, caller: Caller, id: string): Promise<TokenRecord> {
  const token = await app.store.tokens.findById(requireId('id', id));
  if (!token) throw new RotorError('not_found', `token ${id} not found`);
  requireManage(caller.token, token);
  return revokeRecord(app, whoIs(caller), token);
}

/**
 * Revokes an active token. A rotated token stays rotated (so presenting it again is still
 * reuse, docs/rotation.md rule 3); if it still authenticates inside its overlap window, the window ends
 * now. Already revoked or expired tokens are left as they are.
 */
async function revokeRecord(app: AppContext, who: Who, token: TokenRecord): Promise<TokenRecord> {
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
      if (reason === undefined) return current;
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

/** Revokes every member of a family (manual breach response); needs manage rights on its root. */
export async function revokeFamily(app: AppContext, caller: Caller, familyId: string): Promise<number> {
  const root = await app.store.tokens.findFamilyRoot(requireId('family_id', familyId));
  if (!root) throw new RotorError('not_found', `family ${familyId} not found`);
  requireManage(caller.token, root);
  const now = app.now();
  return app.store.transaction((tx) => revokeFamilyIn(tx, whoIs(caller), familyId, 'family_revoked', now), {
    family: familyId,
  });
}

/**
 * Revokes every live member of a family inside the caller's transaction, which must hold the
 * family's lock (`Store.transaction` with `family`), and logs one `family_revoked` event per
 * member (so a watcher of any member learns of it).
 */
export async function revokeFamilyIn(
  tx: Repositories,
  who: Who,
  familyId: string,
  reason: 'family_revoked' | 'reuse_detected',
  now: number,
): Promise<number> {
  const ids = await tx.tokens.revokeFamily(familyId, reason, now);
  await tx.events.append(
    ids.map((tokenId) =>
      eventOf(who, { type: 'family_revoked', tokenId, familyId, successorId: null, reason, occurredAt: now }),
    ),
  );
  return ids.length;
}
