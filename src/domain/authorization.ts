import { audiencesNotHeld } from './audiences.js';
import { RotorError } from './errors.js';
import { POLICY_KNOBS, type TokenPolicy } from './policy.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, SCOPE_METRICS, SCOPE_ROTATE, hasScope, narrowScopes } from './scopes.js';
import type { TokenRecord } from './token.js';
import { sameBinding } from './workload-binding.js';

/**
 * Who may do what to which token (docs/rotation.md, "Who may do what": admins manage every token,
 * owners the tokens of their own owner id). One rule set, used by every use case:
 * - viewing metadata (Get, List): `rotor:admin`, or the same owner id;
 * - managing (rotate by id, revoke, revoke family): `rotor:admin`, or the same owner id AND every
 *   scope of the target held by the caller, so a narrow token cannot take over or shut out a
 *   wider token of its owner;
 * - creating for an owner: never looser than the caller itself (scopes, audiences, expiry,
 *   policy), unless the caller is an admin;
 * - reading GET /metrics when it asks for a token: `rotor:metrics` or `rotor:admin`.
 */
export type Principal = Pick<
  TokenRecord,
  'id' | 'ownerId' | 'scopes' | 'audiences' | 'expiresAt' | 'policy' | 'revokedAt'
>;

/**
 * A superseded token that still authenticates inside its overlap window (docs/rotation.md rule 7) makes
 * ordinary calls only: it can never be rotated again, so it may not mint (create, rotate by id)
 * or manage tokens either.
 */
function requireCurrent(caller: Principal): void {
  if (caller.revokedAt !== null) {
    throw new RotorError('permission_denied', 'a rotated token may not create or manage tokens; use its successor');
  }
}

/** The audiences of `audiences` outside an audience-bound caller's ('(unrestricted)' for none). */
function audiencesOutside(caller: Principal, audiences: readonly string[]): string[] {
  // No audiences asked for is an unrestricted token: wider than a restricted caller.
  if (audiences.length === 0 && caller.audiences.length > 0) return ['(unrestricted)'];
  return audiencesNotHeld(caller.audiences, audiences);
}

/**
 * The policy knobs (snake_case) in which `other` is looser than the caller's policy. A token
 * bound to a workload may only mint tokens bound to the same workload, or the binding would be
 * one creation away from void.
 */
function looserPolicy(caller: Principal, other: TokenPolicy): string[] {
  const looser: string[] = POLICY_KNOBS.filter(
    (k) => k !== 'defaultLifetimeSeconds' && other[k] > caller.policy[k],
  ).map(snake);
  if (caller.policy.workloadBinding !== undefined && !sameBinding(caller.policy.workloadBinding, other.workloadBinding))
    looser.push('workload_binding');
  if (caller.policy.retireOnFirstUse === true && other.retireOnFirstUse !== true) looser.push('retire_on_first_use');
  return looser;
}

export function isAdmin(caller: Principal): boolean {
  return hasScope(caller.scopes, SCOPE_ADMIN);
}

/** Admin, or the same owner: who may read a token's metadata or watch its events. */
function mayView(caller: Principal, target: Pick<TokenRecord, 'ownerId'>): boolean {
  return isAdmin(caller) || caller.ownerId === target.ownerId;
}

/** May read metadata of tokens of `ownerId`. */
export function requireView(caller: Principal, target: Pick<TokenRecord, 'ownerId'>): void {
  if (!mayView(caller, target)) throw new RotorError('permission_denied', 'caller may not access tokens of this owner');
}

/**
 * May watch the events of tokens of `target`'s owner (WatchExpiry, docs/watch-expiry.md): as for reading
 * metadata, `rotor:admin` or the same owner id (so always the caller's own token). Events carry
 * ids, times and states, never a secret, so watching needs no manage rights.
 */
export function requireWatch(caller: Principal, target: Pick<TokenRecord, 'ownerId'>): void {
  if (!mayView(caller, target))
    throw new RotorError('permission_denied', 'watching tokens of another owner needs rotor:admin');
}

/** May rotate by id, revoke, or revoke the family of `target`. */
export function requireManage(caller: Principal, target: Pick<TokenRecord, 'ownerId' | 'scopes' | 'audiences'>): void {
  requireCurrent(caller);
  if (isAdmin(caller)) return;
  requireView(caller, target);
  const missing = target.scopes.filter((s) => !caller.scopes.includes(s));
  if (missing.length > 0) {
    throw new RotorError('permission_denied', `caller lacks scopes of the target token: ${missing.join(' ')}`);
  }
  const outside = audiencesOutside(caller, target.audiences);
  if (outside.length > 0) {
    throw new RotorError('permission_denied', `caller lacks audiences of the target token: ${outside.join(' ')}`);
  }
}

/** Rotation by id: manage rights, and a non-admin needs `rotor:rotate` as for self-rotation. */
export function requireRotateById(
  caller: Principal,
  target: Pick<TokenRecord, 'ownerId' | 'scopes' | 'audiences' | 'policy'>,
): void {
  requireManage(caller, target);
  if (isAdmin(caller)) return;
  if (!hasScope(caller.scopes, SCOPE_ROTATE)) {
    throw new RotorError('permission_denied', `rotating a token needs the ${SCOPE_ROTATE} scope`);
  }
  const looser = looserPolicy(caller, target.policy);
  if (looser.length > 0) {
    throw new RotorError(
      'permission_denied',
      `the target token's policy is looser than the caller's: ${looser.join(', ')}`,
    );
  }
}

/**
 * The successor expiry of a rotation by id: the caller receives the successor's secret, so a
 * non-admin never gets one that outlives itself (as with creation). A requested later expiry is
 * refused; a computed one is capped.
 */
export function successorExpiryFor(caller: Principal, expiresAt: number, requested: boolean): number {
  if (isAdmin(caller) || expiresAt <= caller.expiresAt) return expiresAt;
  if (requested) {
    throw new RotorError('invalid_argument', 'expires_at must not be later than the expiry of the calling token', {
      field: 'expires_at',
    });
  }
  return caller.expiresAt;
}

/** GET /metrics with `ROTOR_METRICS=token`: `rotor:metrics` or `rotor:admin`. */
export function assertMayReadMetrics(caller: Principal): void {
  if (!isAdmin(caller) && !hasScope(caller.scopes, SCOPE_METRICS))
    throw new RotorError('insufficient_scope', `reading metrics needs ${SCOPE_METRICS} or ${SCOPE_ADMIN}`);
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
  requireCurrent(caller);
  if (isAdmin(caller)) return;
  requireView(caller, req);
  narrowScopes(caller.scopes, req.scopes);
  const outside = audiencesOutside(caller, req.audiences);
  if (outside.length > 0) throw new RotorError('invalid_target', `audiences exceed the caller's: ${outside.join(' ')}`);
  if (req.expiresAt > caller.expiresAt) {
    throw new RotorError('invalid_argument', 'expires_at must not be later than the expiry of the calling token', {
      field: 'expires_at',
    });
  }
  const looser = looserPolicy(caller, req.policy);
  if (looser.length > 0) {
    throw new RotorError(
      'invalid_argument',
      `policy must not be looser than the calling token's: ${looser.join(', ')}`,
      { field: 'policy' },
    );
  }
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
