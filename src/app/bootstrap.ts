import { RotorError } from '../domain/errors.js';
import type { MintedToken } from '../domain/new-token.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, SCOPE_ROTATE } from '../domain/scopes.js';
import type { AppContext } from './context.js';
import { createToken } from './token-service.js';

/**
 * Creates the first admin token (`rotor bootstrap`). Refused when an active admin token already
 * exists, so bootstrap cannot be used to mint a second admin credential.
 */
export async function bootstrapAdmin(app: AppContext, opts: { ownerId: string; lifetimeSeconds: number }): Promise<MintedToken> {
  if (await app.store.tokens.existsActiveWithScope(SCOPE_ADMIN, app.now())) {
    throw new RotorError('permission_denied', 'an active admin token already exists; bootstrap refused');
  }
  const lifetime = Math.min(opts.lifetimeSeconds, app.limits.maxLifetimeSeconds);
  return createToken(app, 'bootstrap', {
    kind: 'service_account',
    ownerId: opts.ownerId,
    name: 'bootstrap admin',
    description: 'created by rotor bootstrap',
    scopes: [SCOPE_ADMIN, SCOPE_ROTATE, SCOPE_INTROSPECT],
    audiences: [],
    expiresAt: app.now() + lifetime * 1000,
    policy: {},
  });
}
