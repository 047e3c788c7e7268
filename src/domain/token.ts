import { RotorError } from './errors.js';
import type { TokenPolicy } from './policy.js';
import type { TokenKind } from './token-kind.js';

/** Why a token stopped being active (docs/design.md, Domain). */
export type RevokeReason = 'rotated' | 'revoked' | 'family_revoked' | 'reuse_detected' | 'recovered';

/** The stored token, as the domain sees it. Times are milliseconds since the epoch. */
export interface TokenRecord {
  id: string;
  familyId: string;
  previousId: string | null;
  successorId: string | null;
  kind: TokenKind;
  ownerId: string;
  name: string;
  description: string;
  scopes: string[];
  audiences: string[];
  policy: TokenPolicy;
  createdAt: number;
  expiresAt: number;
  lastUsedAt: number | null;
  revokedAt: number | null;
  revokeReason: RevokeReason | null;
  /** A rotated token's overlap ended early by a revocation; it stays ROTATED (rule 3 intact). */
  overlapEndedAt: number | null;
  /** Keyed HMAC-SHA-256 of the secret; the secret itself is never stored. */
  secretDigest: string;
  displayPrefix: string;
  /** Keyed digest of the idempotency key of the rotation that superseded this token. */
  rotationKeyDigest: string | null;
}

/** Derived state; never stored (docs/design.md, Domain: "States are derived, never stored"). */
export type TokenState = 'active' | 'rotated' | 'revoked' | 'expired';

/** The state of a token at `now`. Revocation and rotation take precedence over expiry. */
export function tokenState(token: TokenRecord, now: number): TokenState {
  if (token.revokedAt !== null) return token.revokeReason === 'rotated' ? 'rotated' : 'revoked';
  return now >= token.expiresAt ? 'expired' : 'active';
}

/**
 * The instant until which a token authenticates ordinary calls: its expiry; for a rotated token
 * the end of its overlap window (docs/rotation.md rule 7), cut short when its successor stops being the
 * active head, so a family has at most one predecessor inside its overlap window; never for a
 * revoked one. For a rotated token pass its successor; without it only rule 7's bound applies.
 */
export function usableUntil(token: TokenRecord, successor?: TokenRecord): number {
  if (token.revokedAt === null) return token.expiresAt;
  if (token.revokeReason !== 'rotated') return 0;
  const overlapEnd = Math.min(
    token.expiresAt,
    token.revokedAt + token.policy.overlapSeconds * 1000,
    token.overlapEndedAt ?? Infinity,
  );
  if (successor?.revokedAt != null) return Math.min(overlapEnd, successor.revokedAt);
  return successor ? Math.min(overlapEnd, successor.expiresAt) : overlapEnd;
}

/** True when the token may authenticate a call (RFC 7662 `active`). */
export function isUsable(token: TokenRecord, now: number, successor?: TokenRecord): boolean {
  return now < usableUntil(token, successor);
}

/**
 * Refuses a presented credential that may not authenticate (docs/rotation.md rule 2 for ordinary
 * calls). Messages say what happened without echoing the secret.
 */
export function assertUsable(token: TokenRecord, now: number, successor?: TokenRecord): void {
  if (isUsable(token, now, successor)) return;
  switch (tokenState(token, now)) {
    case 'rotated':
      throw new RotorError('token_revoked', 'token has been rotated and its overlap window has ended');
    case 'revoked':
      throw new RotorError('token_revoked', 'token has been revoked');
    default:
      throw new RotorError('token_expired', 'token has expired');
  }
}

/** The lifetime a token was issued with, in milliseconds. */
export function issuedLifetime(token: TokenRecord): number {
  return token.expiresAt - token.createdAt;
}
