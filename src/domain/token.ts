import { RotorError } from './errors.js';
import type { TokenPolicy } from './policy.js';
import type { TokenKind } from './token-kind.js';

/** Why a token stopped being active (docs/design.md, Domain). */
export type RevokeReason =
  | 'rotated'
  | 'revoked'
  | 'family_revoked'
  | 'reuse_detected'
  | 'recovered'
  /** An ancestor was revoked with cascade (docs/rotation.md, "Lineage and cascade"). */
  | 'cascade'
  /** A newer token of the same federated workload took its place (federation rule `max_active_tokens`). */
  | 'superseded';

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
  /**
   * When the token stopped being active: its rotation, or its revocation. Revoking a family
   * overwrites it for rotated members, whose rotation time `rotatedAt` keeps.
   */
  revokedAt: number | null;
  revokeReason: RevokeReason | null;
  /** When the token was rotated (superseded by `successorId`); kept when its family is revoked later. */
  rotatedAt: number | null;
  /** A rotated token's overlap ended early by a revocation; it stays ROTATED (rule 3 intact). */
  overlapEndedAt: number | null;
  /** Keyed HMAC-SHA-256 of the secret; the secret itself is never stored. */
  secretDigest: string;
  displayPrefix: string;
  /** Keyed digest of the idempotency key of the rotation that superseded this token. */
  rotationKeyDigest: string | null;
  /**
   * The token that authenticated the call that created this token's family; successors keep it
   * (docs/rotation.md, "Lineage and cascade"). Null for bootstrap, federation and recovery.
   */
  parentId: string | null;
  /**
   * When a revocation with cascade reached this token (the token named, every member of a family
   * revoked with cascade, every descendant). Tokens created by a call it authenticated, and their
   * descendants, never authenticate again (`lineageRevocation`), even while the cascade runs.
   */
  cascadeRevokedAt: number | null;
  /**
   * A successor minted under `retire_on_first_use`: until this instant its first use retires its
   * predecessor (docs/rotation.md, "Retire on first use"); null once it did, or when nothing is to
   * retire. Only the first use of such a successor writes.
   */
  retirePredecessorUntil: number | null;
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
    rotationTime(token) + token.policy.overlapSeconds * 1000,
    token.overlapEndedAt ?? Infinity,
  );
  if (!successor) return overlapEnd;
  // The successor stopped being the active head when it was rotated (a later family revocation
  // moves its `revokedAt`, not that instant), was revoked, or expired.
  const headUntil = Math.min(successor.rotatedAt ?? Infinity, successor.revokedAt ?? Infinity, successor.expiresAt);
  return Math.min(overlapEnd, headUntil);
}

/**
 * When a rotated token was rotated: `rotatedAt`, else its `revokedAt`, which rotation sets to the
 * same instant (a row rotated by a replica that predates `rotated_at`, during a rolling upgrade).
 */
export function rotationTime(token: TokenRecord): number {
  return token.rotatedAt ?? token.revokedAt ?? 0;
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
      throw revokedError(token);
    default:
      throw new RotorError('token_expired', 'token has expired');
  }
}

/**
 * The answer to presenting a revoked token (docs/rotation.md, Errors). A holder whose family was
 * revoked learns why and when, so the owner of a token that reuse detection revoked can tell a
 * theft from an ordinary revocation; the time is the family's revocation, never anything secret.
 */
export function revokedError(token: TokenRecord): RotorError {
  const at = token.revokedAt === null ? undefined : new Date(token.revokedAt).toISOString();
  switch (at === undefined ? undefined : token.revokeReason) {
    case 'reuse_detected':
      return new RotorError('token_revoked', `token has been revoked: reuse detected at ${at}`);
    case 'family_revoked':
      return new RotorError('token_revoked', `token has been revoked: its family was revoked at ${at}`);
    case 'cascade':
      return new RotorError('token_revoked', `token has been revoked: an ancestor was revoked with cascade at ${at}`);
    case 'superseded':
      return new RotorError(
        'token_revoked',
        `token has been revoked: superseded at ${at} by a newer token of the same workload (max_active_tokens)`,
      );
    default:
      return new RotorError('token_revoked', 'token has been revoked');
  }
}

/** The lifetime a token was issued with, in milliseconds. */
export function issuedLifetime(token: TokenRecord): number {
  return token.expiresAt - token.createdAt;
}

/**
 * The answer to a token whose ancestor (`ancestor`, found by walking `parentId`) was revoked with
 * cascade, while the cascade has not reached the token itself yet (docs/rotation.md, "Lineage
 * and cascade").
 */
export function lineageRevokedError(ancestor: TokenRecord): RotorError {
  const at = new Date(ancestor.cascadeRevokedAt ?? 0).toISOString();
  return new RotorError('token_revoked', `token has been revoked: an ancestor was revoked with cascade at ${at}`);
}
