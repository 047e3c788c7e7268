import { uniformBase62 } from './base62.js';
import { narrowAudiences } from './audiences.js';
import { RotorError } from './errors.js';
import type { RandomSource } from './ports.js';
import { narrowScopes } from './scopes.js';
import type { TokenRecord } from './token.js';

/** RFC 9068 §2.1: the `typ` header of a JWT access token. */
export const JWT_ACCESS_TOKEN_TYP = 'at+jwt';

/** Scopes that authorise calls to Rotor itself; Rotor never accepts a JWT as a credential. */
const RESERVED_SCOPE_PREFIX = 'rotor:';

/**
 * Whom a JWT access token speaks for, whatever produced it: a Rotor access token exchanged for a
 * JWT, or (workload federation) a verified external JWT mapped to a service account.
 */
export interface AccessTokenIdentity {
  /** RFC 9068 §2.2 `sub`. */
  sub: string;
  /** Granted scopes (already narrowed by the caller's rules). */
  scopes: readonly string[];
  /** Granted audiences; empty means "the issuer's default resource" (RFC 9068 §3). */
  audiences: readonly string[];
  /** The JWT never outlives this instant (ms): the end of life of what it was derived from. */
  expiresAt: number;
  /** RFC 9068 §2.2 `client_id`; defaults to `sub` when no client is involved. */
  clientId?: string;
  /** RFC 8693 §4.1 `act`: the party acting for the subject. */
  act?: { iss?: string; sub: string };
  /** The Rotor token the JWT was derived from; introspection follows its revocation. */
  source?: { tokenId: string; familyId: string };
  /** RFC 9449 §6.1: the thumbprint of the key the JWT is bound to. */
  cnfJkt?: string;
}

/** The claims Rotor puts in a JWT access token (RFC 9068 §2.2 plus Rotor's source ids). */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope?: string;
  act?: { iss?: string; sub: string };
  /** RFC 9449 §6.1 / RFC 7800: the key a DPoP-bound JWT is bound to. */
  cnf?: { jkt: string };
  /** Id of the Rotor token the JWT was issued from. */
  token_id?: string;
  /** Its rotation family. */
  family_id?: string;
}

/** A fresh `jti`: `jwt_` and 22 base62 characters (131 bits), in the style of Rotor's ids. */
export function newJwtId(random: RandomSource): string {
  return `jwt_${uniformBase62(22, random)}`;
}

/**
 * The claims of a JWT access token issued at `now`: lifetime the configured TTL, never past
 * `identity.expiresAt`; `aud` the granted audiences, else the issuer as the default resource
 * (RFC 9068 §3 requires an audience). Times in the claims are whole seconds.
 */
export function accessTokenClaims(
  identity: AccessTokenIdentity,
  issuer: string,
  now: number,
  ttlSeconds: number,
  jti: string,
): AccessTokenClaims {
  const iat = Math.floor(now / 1000);
  const exp = Math.floor(Math.min(now + ttlSeconds * 1000, identity.expiresAt) / 1000);
  if (exp <= iat)
    throw new RotorError('token_expired', 'token expires within a second; rotate it before asking for a JWT');
  const aud =
    identity.audiences.length === 0
      ? issuer
      : identity.audiences.length === 1
        ? identity.audiences[0]!
        : [...identity.audiences];
  const claims: AccessTokenClaims = {
    iss: issuer,
    sub: identity.sub,
    aud,
    exp,
    iat,
    jti,
    client_id: identity.clientId ?? identity.sub,
  };
  if (identity.scopes.length > 0) claims.scope = identity.scopes.join(' ');
  if (identity.act) claims.act = { ...identity.act };
  if (identity.cnfJkt !== undefined) claims.cnf = { jkt: identity.cnfJkt };
  if (identity.source) {
    claims.token_id = identity.source.tokenId;
    claims.family_id = identity.source.familyId;
  }
  return claims;
}

/**
 * The identity a usable Rotor token may obtain a JWT for (docs/jwt-access-tokens.md):
 * - `sub` is the token's owner id (as `sub` in introspection), `client_id` and `token_id` the
 *   token's id, `family_id` its family;
 * - scopes narrow only; `rotor:*` scopes authorise calls to Rotor, which never accepts a JWT, so
 *   they are left out by default and refused when asked for (`invalid_scope`);
 * - audiences narrow only when the token has any (`invalid_target`); a token without audiences
 *   is unrestricted, so any requested audience narrows it;
 * - the JWT never outlives `usableUntil`, the instant the token stops authenticating.
 */
export function identityForRotorToken(
  token: TokenRecord,
  usableUntil: number,
  request: { scopes: readonly string[]; audiences: readonly string[] },
): AccessTokenIdentity {
  const reserved = request.scopes.filter((s) => s.startsWith(RESERVED_SCOPE_PREFIX));
  if (reserved.length > 0) {
    throw new RotorError(
      'invalid_scope',
      `scopes ${RESERVED_SCOPE_PREFIX}* are not issued in JWT access tokens: ${reserved.join(' ')}`,
    );
  }
  const held = token.scopes.filter((s) => !s.startsWith(RESERVED_SCOPE_PREFIX));
  const scopes = request.scopes.length === 0 ? held : narrowScopes(token.scopes, request.scopes);
  return {
    sub: token.ownerId,
    scopes,
    audiences: narrowAudiences(token.audiences, request.audiences),
    expiresAt: usableUntil,
    clientId: token.id,
    source: { tokenId: token.id, familyId: token.familyId },
  };
}

/** True when `text` has the shape of a JWS compact serialisation (three base64url parts). */
export function looksLikeJwt(text: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(text);
}

/** Algorithms Rotor signs with (RFC 7518 ES256, RFC 8037 EdDSA over Ed25519). */
export const SIGNING_ALGS = ['ES256', 'EdDSA'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];
