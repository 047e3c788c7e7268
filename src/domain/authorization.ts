import { RotorError } from './errors.js';
import type { TokenPolicy } from './policy.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, SCOPE_ROTATE, hasScope, narrowScopes } from './scopes.js';
import type { TokenRecord } from './token.js';

/**
 * Who may do what to which token (issue 2: admins manage every token, owners the tokens of their
 * own owner id). One rule set, used by every use case:
 * - viewing metadata (Get, List): `rotor:admin`, or the same owner id;
 * - managing (rotate by id, revoke, revoke family): `rotor:admin`, or the same owner id AND every
 *   scope of the target held by the caller, so a narrow token cannot take over or shut out a
 *   wider token of its owner;
 * - creating for an owner: never looser than the caller itself (scopes, audiences, expiry,
 *   policy), unless the caller is an admin.
 */
export type Principal = Pick<TokenRecord, 'id' | 'ownerId' | 'scopes' | 'audiences' | 'expiresAt' | 'policy'>;

export function isAdmin(caller: Principal): boolean {
  return hasScope(caller.scopes, SCOPE_ADMIN);
}

/** May read metadata of tokens of `ownerId`. */
export function requireView(caller: Principal, target: Pick<TokenRecord, 'ownerId'>): void {
  if (isAdmin(caller) || caller.ownerId === target.ownerId) return;
  throw new RotorError('permission_denied', 'caller may not access tokens of this owner');
}

/** May rotate by id, revoke, or revoke the family of `target`. */
export function requireManage(caller: Principal, target: Pick<TokenRecord, 'ownerId' | 'scopes'>): void {
  if (isAdmin(caller)) return;
  requireView(caller, target);
  const missing = target.scopes.filter((s) => !caller.scopes.includes(s));
  if (missing.length > 0) {
    throw new RotorError('permission_denied', `caller lacks scopes of the target token: ${missing.join(' ')}`);
  }
}

/** Rotation by id: manage rights, and a non-admin needs `rotor:rotate` as for self-rotation. */
export function requireRotateById(caller: Principal, target: Pick<TokenRecord, 'ownerId' | 'scopes'>): void {
  requireManage(caller, target);
  if (!isAdmin(caller) && !hasScope(caller.scopes, SCOPE_ROTATE)) {
    throw new RotorError('permission_denied', `rotating a token needs the ${SCOPE_ROTATE} scope`);
  }
}

/** RFC 7662 callers: `rotor:introspect` or `rotor:admin` for any token, anyone for itself. */
export function mayIntrospectOthers(caller: Principal): boolean {
  return isAdmin(caller) || hasScope(caller.scopes, SCOPE_INTROSPECT);
}

/** What a non-admin asks to create, checked against the caller itself. */
export interface CreationRequest {
  ownerId: string;
  scopes: string[];
  audiences: string[];
  expiresAt: number;
  policy: TokenPolicy;
}

/**
 * Creation by a non-admin: only for its own owner id, with scopes and audiences it holds, expiring
 * no later than itself, and with a policy no looser than its own. Admins are not limited.
 */
export function checkCreation(caller: Principal, req: CreationRequest): void {
  if (isAdmin(caller)) return;
  requireView(caller, req);
  narrowScopes(caller.scopes, req.scopes);
  if (caller.audiences.length > 0) {
    const outside = req.audiences.length === 0 ? ['(unrestricted)'] : req.audiences.filter((a) => !caller.audiences.includes(a));
    if (outside.length > 0) throw new RotorError('invalid_target', `audiences exceed the caller's: ${outside.join(' ')}`);
  }
  if (req.expiresAt > caller.expiresAt) {
    throw new RotorError('invalid_argument', 'expires_at must not be later than the expiry of the calling token', { field: 'expires_at' });
  }
  const looser = (Object.keys(req.policy) as (keyof TokenPolicy)[]).filter((k) => k !== 'defaultLifetimeSeconds' && req.policy[k] > caller.policy[k]);
  if (looser.length > 0) {
    throw new RotorError('invalid_argument', `policy must not be looser than the calling token's: ${looser.map(snake).join(', ')}`, { field: 'policy' });
  }
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

