import { RotorError } from '../domain/errors.js';
import type { MintedToken } from '../domain/new-token.js';
import { SCOPE_ADMIN } from '../domain/scopes.js';
import type { AppContext } from './context.js';
import { mintAdmin } from './bootstrap.js';
import { eventOf, insertCreated, type Who } from './token-service.js';

/** The actor of the events `rotor recover-admin` writes. */
const RECOVERY: Who = { actor: 'recover-admin', peer: null };

/** Rounds of "list the live admin tokens, revoke them" before giving up (see below). */
const MAX_ROUNDS = 10;

/** What a recovery did: the new admin token and the ids of the admin tokens it revoked. */
export interface Recovery {
  minted: MintedToken;
  revokedIds: string[];
}

/**
 * Break-glass recovery (`rotor recover-admin`, README "Recovering admin access"): for whoever
 * holds the database and the server secret when every admin credential is lost or leaked. In one
 * transaction under the `bootstrap` lock (so it never interleaves with a bootstrap), it revokes
 * every active `rotor:admin` token (reason `recovered`, one `revoked` event each) and inserts a
 * new admin token. Under READ COMMITTED a rotation of an admin token may commit while this runs:
 * its successor is then not in the first list, so the list is read again until it comes back
 * empty (a revoke that blocks on such a rotation's row lock finds the row rotated and moves on).
 */
export async function recoverAdmin(
  app: AppContext,
  opts: { ownerId: string; lifetimeSeconds: number },
): Promise<Recovery> {
  const now = app.now();
  const minted = mintAdmin(app, opts, 'recover-admin', now);
  const revokedIds = await app.store.transaction(
    async (tx) => {
      const revoked: string[] = [];
      for (let round = 0; ; round++) {
        const live = await tx.tokens.listActiveWithScope(SCOPE_ADMIN, now);
        if (live.length === 0) break;
        if (round === MAX_ROUNDS)
          throw new RotorError('unavailable', 'admin tokens kept changing during recovery; run it again');
        for (const t of live) {
          if (!(await tx.tokens.revoke(t.id, 'recovered', now))) continue;
          revoked.push(t.id);
          await tx.events.append([
            eventOf(RECOVERY, {
              type: 'revoked',
              tokenId: t.id,
              familyId: t.familyId,
              successorId: null,
              reason: 'recovered',
              occurredAt: now,
            }),
          ]);
        }
      }
      await insertCreated(tx, minted, RECOVERY, now);
      return revoked;
    },
    { lock: 'bootstrap' },
  );
  return { minted, revokedIds };
}
