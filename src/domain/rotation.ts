import { RotorError } from './errors.js';
import { checkExpiry, type PolicyLimits } from './policy.js';
import { SCOPE_ROTATE, hasScope, narrowScopes } from './scopes.js';
import { issuedLifetime, tokenState, type TokenRecord } from './token.js';
import { digestsEqual } from './token-keys.js';

/** How the token to rotate was named: by presenting its secret, or by id (admin or owner). */
export type RotationMode = 'presented' | 'by_id';

/** Everything the rotation rules need, already loaded; the rules themselves do no I/O. */
export interface RotationInput {
  mode: RotationMode;
  current: TokenRecord;
  /** The row named by `current.successorId`, when there is one. */
  successor: TokenRecord | undefined;
  /** Keyed digest of the request's idempotency key, if it had one. */
  idempotencyKeyDigest: string | undefined;
  /** Requested successor scopes; empty keeps the current scopes. */
  scopes: readonly string[];
  /** Requested successor expiry (ms), if any. */
  expiresAt: number | undefined;
  now: number;
  limits: PolicyLimits;
}

/** What the rotation transaction must do next. */
export type RotationDecision =
  /** Rule 5/6: mint a successor with these attributes and compare-and-set the current token. */
  | { type: 'rotate'; scopes: string[]; expiresAt: number }
  /** Rule 3, idempotent retry: hand back the existing successor again. */
  | { type: 'replay'; successor: TokenRecord }
  /** Rule 3, reuse: revoke the whole family, then answer permission denied. */
  | { type: 'reuse' };

/**
 * DESIGN.md rotation rules 2, 3, 5 and 7 as one pure decision. Rule 1 (parse, checksum, lookup)
 * happens before, rule 4 (workload binding) belongs to the identity layer, rule 6 (the
 * compare-and-set) to the transaction that acts on the decision.
 */
export function decideRotation(input: RotationInput): RotationDecision {
  const { current, now } = input;
  const state = tokenState(current, now);
  // Rule 2: expired, or revoked for any reason but rotation, is refused outright. Named by id,
  // it is the target's state that is wrong, not the caller's credential.
  if (state === 'revoked' || now >= current.expiresAt) {
    const what = state === 'revoked' ? 'revoked' : 'expired';
    if (input.mode === 'by_id') throw new RotorError('not_rotatable', `token ${current.id} has ${what === 'revoked' ? 'been revoked' : 'expired'} and cannot be rotated`);
    throw state === 'revoked' ? new RotorError('token_revoked', 'token has been revoked') : new RotorError('token_expired', 'token has expired');
  }
  // Rule 3 (and 7: a rotated token, even inside its overlap window, is never rotated again).
  if (state === 'rotated') return decideSuperseded(input);
  if (input.mode === 'presented' && !hasScope(current.scopes, SCOPE_ROTATE)) {
    throw new RotorError('permission_denied', `token lacks the ${SCOPE_ROTATE} scope needed to rotate itself`);
  }
  // Rule 5: never escalate; expiry requested, else the default successor lifetime, capped.
  const scopes = narrowScopes(current.scopes, input.scopes);
  const cap = Math.min(current.policy.maxLifetimeSeconds, input.limits.maxLifetimeSeconds) * 1000;
  let expiresAt: number;
  if (input.expiresAt !== undefined) {
    expiresAt = checkExpiry(input.expiresAt, now, current.policy, input.limits);
  } else {
    const lifetime = current.policy.defaultLifetimeSeconds > 0 ? current.policy.defaultLifetimeSeconds * 1000 : issuedLifetime(current);
    expiresAt = now + Math.min(lifetime, cap);
  }
  return { type: 'rotate', scopes, expiresAt };
}

function decideSuperseded(input: RotationInput): RotationDecision {
  const { current, successor, now } = input;
  const rotatedAt = current.revokedAt ?? 0;
  // "Immediate predecessor": its successor is still the active head of the family.
  const immediate = successor !== undefined && tokenState(successor, now) === 'active';
  if (
    immediate &&
    input.idempotencyKeyDigest !== undefined &&
    current.rotationKeyDigest !== null &&
    digestsEqual(input.idempotencyKeyDigest, current.rotationKeyDigest) &&
    now < rotatedAt + input.limits.retryWindowSeconds * 1000
  ) {
    return { type: 'replay', successor };
  }
  if (immediate && (input.mode === 'by_id' || now < rotatedAt + current.policy.reuseGraceSeconds * 1000)) {
    throw new RotorError('already_rotated', `token was already rotated; its successor is ${successor.id}`, {
      successorId: successor.id,
    });
  }
  if (input.mode === 'by_id') {
    // Naming a superseded token by id is a stale request, not a stolen credential.
    throw new RotorError('already_rotated', `token was already rotated; its successor is ${current.successorId ?? ''}`, {
      successorId: current.successorId ?? '',
    });
  }
  return { type: 'reuse' };
}
