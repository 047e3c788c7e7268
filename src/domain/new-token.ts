import { uniformBase62 } from './base62.js';
import type { RandomSource } from './ports.js';
import { displayPrefix, formatSecret } from './token-secret.js';
import type { TokenRecord } from './token.js';
import type { TokenKeys } from './token-keys.js';

/** 22 base62 characters: 131 bits, so ids are unguessable as well as unique. */
const ID_CHARS = 22;

/** A fresh identifier with a type prefix (`tok_`, `fam_`). */
export function newId(prefix: 'tok' | 'fam', random: RandomSource): string {
  return `${prefix}_${uniformBase62(ID_CHARS, random)}`;
}

/** The attributes a caller chooses for a new token. */
export type NewTokenSpec = Pick<
  TokenRecord,
  'kind' | 'ownerId' | 'name' | 'description' | 'scopes' | 'audiences' | 'policy' | 'expiresAt'
>;

/** A minted token: the record to store and the plaintext to show exactly once. */
export interface MintedToken {
  record: TokenRecord;
  secret: string;
}

/** The fields every newly minted token starts with: its secret's digest, no history. */
function freshFields(secret: string, now: number, keys: TokenKeys) {
  return {
    successorId: null,
    createdAt: now,
    lastUsedAt: null,
    revokedAt: null,
    revokeReason: null,
    rotatedAt: null,
    overlapEndedAt: null,
    secretDigest: keys.secretDigest(secret),
    displayPrefix: displayPrefix(secret),
    rotationKeyDigest: null,
    cascadeRevokedAt: null,
    retirePredecessorUntil: null,
  };
}

/**
 * Mints the first token of a new family. `parentId`: the token that authenticated the call
 * (docs/rotation.md, "Lineage and cascade"); null for bootstrap, federation and recovery.
 */
export function mintToken(
  spec: NewTokenSpec,
  now: number,
  random: RandomSource,
  keys: TokenKeys,
  parentId: string | null = null,
): MintedToken {
  const secret = formatSecret(spec.kind, random);
  const id = newId('tok', random);
  return {
    secret,
    record: {
      ...spec,
      id,
      familyId: newId('fam', random),
      previousId: null,
      ...freshFields(secret, now, keys),
      parentId,
    },
  };
}

/**
 * Mints the successor of `current` (docs/rotation.md rule 5: kind, owner, name, policy and, unless
 * narrowed, audiences are inherited). `secretBytes` is a CSPRNG, or the deterministic stream of an
 * idempotent rotation.
 */
export function mintSuccessor(
  current: TokenRecord,
  attrs: { scopes: string[]; expiresAt: number; audiences?: string[] },
  now: number,
  secretBytes: RandomSource,
  random: RandomSource,
  keys: TokenKeys,
): MintedToken {
  const secret = formatSecret(current.kind, secretBytes);
  return {
    secret,
    record: {
      ...current,
      id: newId('tok', random),
      previousId: current.id,
      scopes: attrs.scopes,
      audiences: attrs.audiences ?? current.audiences,
      expiresAt: attrs.expiresAt,
      ...freshFields(secret, now, keys),
      retirePredecessorUntil: retireWindowEnd(current, now),
    },
  };
}

/**
 * Under `retire_on_first_use` (docs/rotation.md, "Retire on first use"), the instant until which
 * the successor's first use still has a predecessor to retire: the end of the predecessor's
 * overlap window (rule 7) for a rotation at `now`. Null without the policy.
 */
export function retireWindowEnd(current: TokenRecord, now: number): number | null {
  if (current.policy.retireOnFirstUse !== true || current.policy.overlapSeconds <= 0) return null;
  return Math.min(current.expiresAt, now + current.policy.overlapSeconds * 1000);
}
