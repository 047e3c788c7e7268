import { decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { RotorError } from '../domain/errors.js';
import { LIMITS } from '../domain/input-limits.js';
import {
  JWT_ACCESS_TOKEN_TYP,
  accessTokenClaims,
  identityForRotorToken,
  newJwtId,
  type AccessTokenClaims,
  type AccessTokenIdentity,
} from '../domain/jwt-access-token.js';
import { usableUntil, type TokenRecord } from '../domain/token.js';
import { actorTokenWithoutBinding, checkBinding, type WorkloadActor } from '../domain/workload-binding.js';
import { cascadeRevokedAncestor, noteUse, retireOnFirstUse, usableBySecret } from './authenticate.js';
import type { AppContext } from './context.js';
import { successorBinding, type DpopRequest } from './dpop.js';
import { verifyActorToken } from './workload-proof.js';

/** A signed JWT access token and the claims in it. */
export interface MintedJwt {
  jwt: string;
  claims: AccessTokenClaims;
  kid: string;
}

/**
 * Signs a JWT access token for `identity` (RFC 9068 profile: header `typ: at+jwt` and `kid`;
 * claims iss, sub, aud, exp, iat, jti, client_id, scope, act, token_id, family_id). Only the
 * exchange of a Rotor token issues one: a workload JWT is federated to a Rotor token first.
 */
async function mintAccessToken(app: AppContext, identity: AccessTokenIdentity): Promise<MintedJwt> {
  const now = app.now();
  const claims = accessTokenClaims(identity, app.jwt.issuer, now, app.jwt.ttlSeconds, newJwtId(app.random));
  const { meta, privateKey } = await app.jwt.keyRing.signingKey(now);
  const jwt = await new SignJWT({ ...claims })
    .setProtectedHeader({ alg: meta.alg, typ: JWT_ACCESS_TOKEN_TYP, kid: meta.kid })
    .sign(privateKey);
  if (jwt.length > LIMITS.tokenParameter) {
    throw new RotorError(
      'invalid_argument',
      `the JWT would be longer than ${LIMITS.tokenParameter} characters; request fewer scopes or audiences`,
    );
  }
  await app.jwt.keyRing.signed(meta, claims.exp * 1000);
  return { jwt, claims, kid: meta.kid };
}

/**
 * RFC 8693 exchange of a usable Rotor access token for a JWT access token. The subject is not
 * rotated; it needs no particular scope (the JWT is narrower and shorter-lived than the token
 * itself). A token with a workload binding may send its workload's JWT as `actor_token`: verified
 * and matched like a rotation's proof (docs/rotation.md rule 4), it puts the workload's `iss`/`sub` in
 * the JWT's `act` claim (RFC 8693 §4.1). A token without a binding refuses an `actor_token`.
 */
export async function issueJwtForRotorToken(
  app: AppContext,
  req: {
    subjectToken: string;
    scopes: readonly string[];
    audiences: readonly string[];
    actorToken: string | undefined;
    actorTokenType: string | undefined;
  },
  peer: string | null,
  dpop?: DpopRequest,
): Promise<MintedJwt> {
  const { token, successor, now } = await usableBySecret(app, req.subjectToken);
  // RFC 9449 §6: a bound token (after its proof), or an unbound one sent with a proof, yields a
  // JWT whose `cnf.jkt` names the key.
  const jkt = await successorBinding(app, dpop, token, req.subjectToken, 'subject');
  const identity = identityForRotorToken(token, usableUntil(token, successor), req);
  if (jkt !== undefined) identity.cnfJkt = jkt;
  const act = await actorFor(app, token, req.actorToken, req.actorTokenType);
  if (act) identity.act = act;
  const minted = await mintAccessToken(app, identity);
  await retireOnFirstUse(app, token, now, peer);
  noteUse(app, token, now);
  app.log.info('issued JWT access token', {
    jti: minted.claims.jti,
    kid: minted.kid,
    token_id: token.id,
    exp: minted.claims.exp,
    peer,
  });
  return minted;
}

/** The verified workload behind a JWT request, when it sent an `actor_token` (bound tokens only). */
async function actorFor(
  app: AppContext,
  token: TokenRecord,
  actorToken: string | undefined,
  actorTokenType: string | undefined,
): Promise<WorkloadActor | undefined> {
  if (actorToken === undefined && actorTokenType === undefined) return undefined;
  const binding = token.policy.workloadBinding;
  // Refused before the JWT is verified, so its jti is not spent.
  if (binding === undefined) throw actorTokenWithoutBinding();
  const proof = await verifyActorToken(app, actorToken, actorTokenType, undefined, true);
  if (proof?.rejection) throw proof.rejection;
  const claims = proof?.claims;
  checkBinding(binding, claims);
  return claims && { iss: claims.iss, sub: claims.sub };
}

/**
 * Verifies a JWT access token Rotor issued: a published key by `kid`, its own algorithm only,
 * `typ: at+jwt`, our issuer, not expired at the app clock (no skew: the clock is our own).
 * Undefined when any check fails.
 */
export async function verifyRotorJwt(app: AppContext, jwt: string): Promise<AccessTokenClaims | undefined> {
  const now = app.now();
  let kid: string | undefined;
  try {
    kid = decodeProtectedHeader(jwt).kid;
  } catch {
    return undefined;
  }
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > 64) return undefined;
  const found = await app.jwt.keyRing.verificationKey(kid, now);
  if (!found) return undefined;
  try {
    const { payload } = await jwtVerify(jwt, found.key, {
      issuer: app.jwt.issuer,
      typ: JWT_ACCESS_TOKEN_TYP,
      algorithms: [found.meta.alg],
      currentDate: new Date(now),
      // Every JWT Rotor signs names its source token (federation does not issue JWTs).
      requiredClaims: ['sub', 'aud', 'exp', 'iat', 'jti', 'client_id', 'token_id', 'family_id'],
    });
    return payload as unknown as AccessTokenClaims;
  } catch (e) {
    if (e instanceof joseErrors.JOSEError) return undefined;
    throw e;
  }
}

/** Longest successor chain followed when checking a JWT's source (fails closed beyond it). */
const MAX_CHAIN = 64;

/**
 * The source token of a verified JWT, and whether the JWT still stands. It does not once its
 * source token has been revoked (RevokeToken or RFC 7009 — which, for a token already rotated,
 * ends its overlap — RevokeFamily, reuse detection), or once a token the source was rotated
 * into has been revoked. Ordinary rotation of the source does not end the JWT. A JWT without a
 * source does not stand (fails closed; verifyRotorJwt already requires `token_id`).
 */
export async function jwtSourceStanding(
  app: AppContext,
  claims: AccessTokenClaims,
): Promise<{ standing: boolean; source: TokenRecord | undefined }> {
  if (claims.token_id === undefined) return { standing: false, source: undefined };
  const source = await app.store.tokens.findById(claims.token_id);
  if (!source || source.overlapEndedAt !== null) return { standing: false, source };
  let t: TokenRecord | undefined = source;
  for (let i = 0; t; i++) {
    if (i >= MAX_CHAIN) return { standing: false, source };
    if (t.revokedAt !== null && t.revokeReason !== 'rotated') return { standing: false, source };
    if (t.revokeReason !== 'rotated' || t.successorId === null) break;
    t = await app.store.tokens.findById(t.successorId);
  }
  // A cascade that reached an ancestor of the source ends its JWTs too, before its batches reach
  // the source itself (docs/rotation.md, "Lineage and cascade").
  if (await cascadeRevokedAncestor(app.store.tokens, source)) return { standing: false, source };
  return { standing: true, source };
}
