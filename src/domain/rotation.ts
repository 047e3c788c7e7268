import { RotorError } from './errors.js';
import { narrowAudiences } from './audiences.js';
import { checkExpiry, lifetimeCapMs, type PolicyLimits } from './policy.js';
import { SCOPE_ROTATE, hasScope, narrowScopes } from './scopes.js';
import { issuedLifetime, revokedError, rotationTime, tokenState, type TokenRecord } from './token.js';
import { digestsEqual } from './token-keys.js';
import { actorTokenWithoutBinding, checkBinding, type WorkloadClaims } from './workload-binding.js';

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
  /** Requested successor audiences (RFC 8693 `audience`/`resource`); empty keeps the current ones. */
  audiences: readonly string[];
  /** Requested successor expiry (ms), if any. */
  expiresAt: number | undefined;
  /**
   * Rule 4: the verified claims of the request's RFC 8693 `actor_token`, when it carried one.
   * Verification (signature, issuer, times, replay) is I/O and happens before the decision.
   */
  actor?: WorkloadClaims;
  /** The request's actor token failed verification; raised at rule 4, after rules 2 and 3. */
  actorRejection?: RotorError;
  /** Named by id by an admin, who may rotate a bound token without the workload's proof. */
  byAdmin?: boolean;
  /** When the request arrived (ms): wrong keys close to the rotation are taken for racing callers. */
  receivedAt: number;
  /** Wrong idempotency keys already refused for `current` (its `retry_refused` events), by kind. */
  refusedRetryKeys: RefusedRetryKeys;
  now: number;
  limits: PolicyLimits;
}

/** What the rotation transaction must do next. */
export type RotationDecision =
  /** Rule 5/6: mint a successor with these attributes and compare-and-set the current token. */
  | { type: 'rotate'; scopes: string[]; audiences: string[]; expiresAt: number }
  /** Rule 3, idempotent retry: hand back the existing successor again (and log it). */
  | { type: 'replay'; successor: TokenRecord }
  /** Rule 3, a wrong idempotency key inside the grace: log the refusal, then answer "already rotated". */
  | { type: 'refuse_retry'; successor: TokenRecord; reason: RetryRefusal }
  /**
   * Rule 3, reuse: revoke the whole family, then answer permission denied. `cause`: the token was
   * presented after the grace (or was not the immediate predecessor), or it was retried with wrong
   * idempotency keys more than `MAX_REFUSED_RETRY_KEYS` times.
   */
  | { type: 'reuse'; cause: 'presented_again' | 'wrong_retry_keys' };

/**
 * Why a wrong idempotency key was refused, as its `retry_refused` event records it: it arrived
 * within `RETRY_RACE_WINDOW_MS` of the rotation (a caller that raced it, such as another replica
 * with a key of its own), or later (a guess at the successor's secret).
 */
export type RetryRefusal = 'racing_rotation' | 'wrong_idempotency_key';

/** Wrong keys refused so far for one rotated token, by `RetryRefusal`. */
export interface RefusedRetryKeys {
  racing: number;
  late: number;
}

/**
 * Wrong idempotency keys refused for one rotated token, after the race window, before the next
 * one is treated as reuse. Keys carry 128 bits (src/domain/input-limits.ts), so a guess cannot
 * succeed; this stops anyone holding the old secret from trying for long, and tells the owner
 * (the family is revoked).
 */
export const MAX_REFUSED_RETRY_KEYS = 5;

/**
 * Callers racing one rotation each with a key of their own (replicas of one workload) lose with a
 * wrong key. Inside this window after the rotation, up to `MAX_RACING_RETRY_KEYS` of them are
 * refused without counting towards `MAX_REFUSED_RETRY_KEYS`, so 50 racing callers leave the family
 * intact while a guesser still gets a bounded number of tries in all.
 */
export const RETRY_RACE_WINDOW_MS = 3000;
export const MAX_RACING_RETRY_KEYS = 64;

/**
 * docs/rotation.md rule 2, 3, 4, 5 and 7 as one pure decision. Rule 1 (parse, checksum,
 * lookup) happens before; rule 6 (the compare-and-set) belongs to the transaction that acts on the
 * decision.
 */
export function decideRotation(input: RotationInput): RotationDecision {
  const { current, now } = input;
  const state = tokenState(current, now);
  // Rule 3 comes first for a superseded token, expired or not: presenting it is reuse whatever its
  // age (the thief holds the live successor), and it is never rotated again (rule 7).
  if (state === 'rotated') return decideSuperseded(input);
  // Rule 2: expired, or revoked for any reason but rotation, is refused outright. Named by id,
  // it is the target's state that is wrong, not the caller's credential.
  if (state === 'revoked' || state === 'expired') {
    if (input.mode === 'by_id') {
      throw new RotorError(
        'not_rotatable',
        `token ${current.id} has ${state === 'revoked' ? 'been revoked' : 'expired'} and cannot be rotated`,
      );
    }
    throw state === 'revoked' ? revokedError(current) : new RotorError('token_expired', 'token has expired');
  }
  requireWorkload(input);
  if (input.mode === 'presented' && !hasScope(current.scopes, SCOPE_ROTATE)) {
    throw new RotorError('permission_denied', `token lacks the ${SCOPE_ROTATE} scope needed to rotate itself`);
  }
  // Rule 5: never escalate; expiry requested, else the default successor lifetime, capped.
  const scopes = narrowScopes(current.scopes, input.scopes);
  let expiresAt: number;
  if (input.expiresAt !== undefined) {
    expiresAt = checkExpiry(input.expiresAt, now, current.policy, input.limits);
  } else {
    const lifetime =
      current.policy.defaultLifetimeSeconds > 0
        ? current.policy.defaultLifetimeSeconds * 1000
        : issuedLifetime(current);
    expiresAt = now + Math.min(lifetime, lifetimeCapMs(current.policy, input.limits));
  }
  return { type: 'rotate', scopes, audiences: narrowAudiences(current.audiences, input.audiences), expiresAt };
}

/** The answer for a superseded token inside the grace, or named by id: "already rotated". */
export function alreadyRotated(successorId: string): RotorError {
  return new RotorError('already_rotated', `token was already rotated; its successor is ${successorId}`, {
    successorId,
  });
}

/**
 * Rule 4: a token with a workload binding rotates only for a verified actor whose claims match
 * it (an admin naming it by id is exempt unless it sends an actor token); a token without one
 * refuses an actor token rather than ignoring it.
 */
function requireWorkload(input: RotationInput): void {
  const binding = input.current.policy.workloadBinding;
  if (binding === undefined) {
    if (input.actor !== undefined || input.actorRejection !== undefined) {
      throw actorTokenWithoutBinding();
    }
    return;
  }
  if (input.actorRejection !== undefined) throw input.actorRejection;
  if (input.actor === undefined && input.mode === 'by_id' && input.byAdmin === true) return;
  checkBinding(binding, input.actor);
}

function decideSuperseded(input: RotationInput): RotationDecision {
  const { current, successor, now } = input;
  const rotatedAt = rotationTime(current);
  // "Immediate predecessor": its successor is still the active head of the family.
  const immediate = successor !== undefined && tokenState(successor, now) === 'active';
  const key = input.idempotencyKeyDigest;
  const keyMatches =
    key !== undefined && current.rotationKeyDigest !== null && digestsEqual(key, current.rotationKeyDigest);
  if (immediate && keyMatches && now < rotatedAt + input.limits.retryWindowSeconds * 1000) {
    // An idempotent retry of a bound token proves the workload again, as the first call did.
    requireWorkload(input);
    return { type: 'replay', successor };
  }
  // Naming a superseded token by id is a stale request, not a stolen credential.
  if (input.mode === 'by_id') throw alreadyRotated(current.successorId ?? '');
  if (immediate && now < rotatedAt + current.policy.reuseGraceSeconds * 1000) {
    // A request without a key guesses nothing. A wrong key is refused and logged; close to the
    // rotation it is taken for a racing caller, later for a guess at the successor's secret, and
    // past either limit it is treated as reuse.
    if (key === undefined || keyMatches) throw alreadyRotated(successor.id);
    const racing = input.receivedAt - rotatedAt <= RETRY_RACE_WINDOW_MS;
    const refused = racing ? input.refusedRetryKeys.racing : input.refusedRetryKeys.late;
    if (refused >= (racing ? MAX_RACING_RETRY_KEYS : MAX_REFUSED_RETRY_KEYS))
      return { type: 'reuse', cause: 'wrong_retry_keys' };
    return { type: 'refuse_retry', successor, reason: racing ? 'racing_rotation' : 'wrong_idempotency_key' };
  }
  return { type: 'reuse', cause: 'presented_again' };
}
