/**
 * The `tokens` row and its mapping to and from `TokenRecord`. Its own file because two writers need
 * it: `KnexTokenRepository` (knex's builder) and the fast path's SQL (`rotation-statements.ts`).
 */
import type { TokenPolicy } from '../domain/policy.js';
import type { RevokeReason, TokenRecord } from '../domain/token.js';
import { isTokenKind } from '../domain/token-kind.js';

/** The `tokens` table row (snake_case, as stored). */
export interface TokenRow {
  id: string;
  family_id: string;
  previous_id: string | null;
  successor_id: string | null;
  kind: string;
  owner_id: string;
  name: string;
  description: string;
  scopes: string;
  audiences: string;
  policy: string;
  created_at: number | string;
  expires_at: number | string;
  last_used_at: number | string | null;
  revoked_at: number | string | null;
  revoke_reason: string | null;
  rotated_at: number | string | null;
  overlap_ended_at: number | string | null;
  secret_digest: string;
  display_prefix: string;
  rotation_key_digest: string | null;
  parent_id: string | null;
  cascade_revoked_at: number | string | null;
  retire_predecessor_until: number | string | null;
}

const num = (v: number | string): number => Number(v);
const numOrNull = (v: number | string | null): number | null => (v === null ? null : Number(v));

/** The record a stored row stands for; numbers come back as strings from pg's bigint columns. */
export function toRecord(row: TokenRow): TokenRecord {
  if (!isTokenKind(row.kind)) throw new Error(`tokens.kind holds an unknown value for ${row.id}`);
  return {
    id: row.id,
    familyId: row.family_id,
    previousId: row.previous_id,
    successorId: row.successor_id,
    kind: row.kind,
    ownerId: row.owner_id,
    name: row.name,
    description: row.description,
    scopes: JSON.parse(row.scopes) as string[],
    audiences: JSON.parse(row.audiences) as string[],
    policy: JSON.parse(row.policy) as TokenPolicy,
    createdAt: num(row.created_at),
    expiresAt: num(row.expires_at),
    lastUsedAt: numOrNull(row.last_used_at),
    revokedAt: numOrNull(row.revoked_at),
    revokeReason: row.revoke_reason as RevokeReason | null,
    rotatedAt: numOrNull(row.rotated_at),
    overlapEndedAt: numOrNull(row.overlap_ended_at),
    secretDigest: row.secret_digest,
    displayPrefix: row.display_prefix,
    rotationKeyDigest: row.rotation_key_digest,
    parentId: row.parent_id ?? null,
    cascadeRevokedAt: numOrNull(row.cascade_revoked_at ?? null),
    retirePredecessorUntil: numOrNull(row.retire_predecessor_until ?? null),
  };
}

/** The row written for a record (by the repository, the fast path and the bench's bare baseline). */
export function toRow(t: TokenRecord): TokenRow {
  return {
    id: t.id,
    family_id: t.familyId,
    previous_id: t.previousId,
    successor_id: t.successorId,
    kind: t.kind,
    owner_id: t.ownerId,
    name: t.name,
    description: t.description,
    scopes: JSON.stringify(t.scopes),
    audiences: JSON.stringify(t.audiences),
    policy: JSON.stringify(t.policy),
    created_at: t.createdAt,
    expires_at: t.expiresAt,
    last_used_at: t.lastUsedAt,
    revoked_at: t.revokedAt,
    revoke_reason: t.revokeReason,
    rotated_at: t.rotatedAt,
    overlap_ended_at: t.overlapEndedAt,
    secret_digest: t.secretDigest,
    display_prefix: t.displayPrefix,
    rotation_key_digest: t.rotationKeyDigest,
    parent_id: t.parentId,
    cascade_revoked_at: t.cascadeRevokedAt,
    retire_predecessor_until: t.retirePredecessorUntil,
  };
}
