import { RotorError } from '../domain/errors.js';
import type { MintedToken } from '../domain/new-token.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, SCOPE_ROTATE } from '../domain/scopes.js';
import type { AppContext } from './context.js';
import { insertCreated, mintBootstrap } from './token-service.js';

/**
 * Creates the first admin token (`rotor bootstrap`). Refused while an active `rotor:admin` token
 * exists, checked in the same transaction as the insert, so bootstrap cannot mint a second
 * working admin credential. Once every admin token has expired or been revoked, bootstrap is the
 * way back in (it needs access to the database and the server secret); while a lost or leaked one
 * is still active, `rotor recover-admin` is (src/app/recovery.ts). Concurrent bootstraps (two
 * `rotor bootstrap` runs on one PostgreSQL database) take the `bootstrap` lock, so the second one
 * sees the first one's admin token and is refused.
 */
export async function bootstrapAdmin(
  app: AppContext,
  opts: { ownerId: string; lifetimeSeconds: number },
): Promise<MintedToken> {
  const now = app.now();
  const minted = mintAdmin(app, opts, 'bootstrap', now);
  await app.store.transaction(
    async (tx) => {
      if (await tx.tokens.existsActiveWithScope(SCOPE_ADMIN, now)) {
        throw new RotorError('permission_denied', 'an active admin token already exists; bootstrap refused');
      }
      await insertCreated(tx, minted, { actor: 'bootstrap', peer: null }, now);
    },
    { lock: 'bootstrap' },
  );
  return minted;
}

/**
 * The admin token `rotor bootstrap` and `rotor recover-admin` mint (not stored yet): a service
 * account of `ownerId` with rotor:admin, rotor:rotate and rotor:introspect, living
 * `lifetimeSeconds` capped by the server's max lifetime, named after the command that made it.
 */
export function mintAdmin(
  app: AppContext,
  opts: { ownerId: string; lifetimeSeconds: number },
  by: 'bootstrap' | 'recover-admin',
  now: number,
): MintedToken {
  const lifetime = Math.min(opts.lifetimeSeconds, app.limits.maxLifetimeSeconds);
  return mintBootstrap(
    app,
    {
      kind: 'service_account',
      ownerId: opts.ownerId,
      name: by === 'bootstrap' ? 'bootstrap admin' : 'recovered admin',
      description: `created by rotor ${by}`,
      scopes: [SCOPE_ADMIN, SCOPE_ROTATE, SCOPE_INTROSPECT],
      audiences: [],
      expiresAt: now + lifetime * 1000,
      policy: {},
    },
    now,
  );
}
