import { mayIntrospectOthers } from '../domain/authorization.js';
import { RotorError, isRotorError } from '../domain/errors.js';
import { LIMITS } from '../domain/input-limits.js';
import { SCOPE_INTROSPECT } from '../domain/scopes.js';
import { isUsable, type TokenRecord } from '../domain/token.js';
import { digestsEqual } from '../domain/token-keys.js';
import { findBySecret, successorForUse, type Caller } from './authenticate.js';
import type { AppContext } from './context.js';

/** RFC 7662 §2.2 introspection result, before transport encoding. */
export type Introspection = { active: false } | { active: true; token: TokenRecord };

/**
 * RFC 7662 introspection. Callers holding `rotor:introspect` or `rotor:admin` may introspect any
 * token; others only their own. Anything not usable is `{active: false}` (§2.2).
 */
export async function introspect(app: AppContext, caller: Caller, secret: string): Promise<Introspection> {
  if (secret.length > LIMITS.tokenParameter) throw new RotorError('invalid_argument', 'token is too long', { field: 'token' });
  const privileged = mayIntrospectOthers(caller.token);
  const denied = () => new RotorError('permission_denied', `introspecting another token needs the ${SCOPE_INTROSPECT} scope`);
  let token: TokenRecord | undefined;
  try {
    token = await findBySecret(app, secret);
  } catch (e) {
    if (isRotorError(e) && e.code === 'invalid_token') {
      if (!privileged) throw denied();
      return { active: false };
    }
    throw e;
  }
  if (!privileged && !(token && digestsEqual(token.secretDigest, caller.token.secretDigest))) throw denied();
  if (!token || !isUsable(token, app.now(), await successorForUse(app, token))) return { active: false };
  return { active: true, token };
}
