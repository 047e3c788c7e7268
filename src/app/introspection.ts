import { mayIntrospectOthers } from '../domain/authorization.js';
import { RotorError, isRotorError } from '../domain/errors.js';
import { LIMITS } from '../domain/input-limits.js';
import { looksLikeJwt } from '../domain/jwt-access-token.js';
import { SCOPE_INTROSPECT } from '../domain/scopes.js';
import { isUsable, type TokenRecord } from '../domain/token.js';
import type { TokenKind } from '../domain/token-kind.js';
import {
  cascadeRevokedAncestor,
  findBySecret,
  retireOnFirstUse,
  successorForUse,
  type Caller,
} from './authenticate.js';
import type { AppContext } from './context.js';
import { jwtSourceStanding, verifyRotorJwt } from './jwt-access-tokens.js';

/** What an active token is, in RFC 7662 §2.2 terms plus Rotor's ids. Times in milliseconds. */
export interface ActiveToken {
  scopes: string[];
  expiresAt: number;
  issuedAt: number;
  sub: string;
  audiences: string[];
  /** The Rotor token: itself, or the one a JWT was issued from ('' when none). */
  tokenId: string;
  familyId: string;
  kind: TokenKind | undefined;
  ownerId: string;
  /** RFC 9449 §6.2 `cnf.jkt`: the key the token is bound to (undefined: a bearer token). */
  cnfJkt?: string;
  /** Set for a JWT access token: its `iss`, `jti`, `client_id` and `act`. */
  jwt?: { iss: string; jti: string; clientId: string; act?: { iss?: string; sub: string } };
}

/** RFC 7662 §2.2 introspection result, before transport encoding. */
export type Introspection = { active: false } | { active: true; token: ActiveToken };

const denied = () =>
  new RotorError('permission_denied', `introspecting another token needs the ${SCOPE_INTROSPECT} scope`);

/**
 * RFC 7662 introspection of a Rotor token or of a JWT access token Rotor issued. Callers holding
 * `rotor:introspect` or `rotor:admin` may introspect any token; others only their own (for a
 * JWT: one issued from the caller's token). Anything not usable is `{active: false}` (§2.2).
 * Answers at once (a value or a thrown error) when the token and its lineage are in the cache and
 * nothing has to be written; a promise otherwise. Callers `await` it either way.
 */
export function introspect(app: AppContext, caller: Caller, secret: string): Introspection | Promise<Introspection> {
  if (secret.length > LIMITS.tokenParameter)
    throw new RotorError('invalid_argument', 'token is too long', { field: 'token' });
  if (looksLikeJwt(secret)) return introspectJwt(app, caller, secret);
  const privileged = mayIntrospectOthers(caller.token);
  let found: TokenRecord | undefined | Promise<TokenRecord | undefined>;
  try {
    found = findBySecret(app, secret);
  } catch (e) {
    return unreadable(e, privileged);
  }
  if (found instanceof Promise)
    return found.then(
      (token) => introspectFound(app, caller, privileged, token),
      (e: unknown) => unreadable(e, privileged),
    );
  return introspectFound(app, caller, privileged, found);
}

/** A secret that does not parse is inactive for a privileged caller, and none of another's business. */
function unreadable(e: unknown, privileged: boolean): Introspection {
  if (isRotorError(e) && e.code === 'invalid_token') {
    if (!privileged) throw denied();
    return { active: false };
  }
  throw e;
}

function introspectFound(
  app: AppContext,
  caller: Caller,
  privileged: boolean,
  token: TokenRecord | undefined,
): Introspection | Promise<Introspection> {
  // By id, not by digest: a row found under an older server key is re-digested between two lookups.
  if (!privileged && !(token && token.id === caller.token.id)) throw denied();
  if (!token) return { active: false };
  // Each step waits only when it had to read (successorForUse and the others say when).
  const pending = successorForUse(app.store.tokens, token);
  if (pending) return pending.then((successor) => introspectUsable(app, caller, token, successor));
  return introspectUsable(app, caller, token, undefined);
}

function introspectUsable(
  app: AppContext,
  caller: Caller,
  token: TokenRecord,
  successor: TokenRecord | undefined,
): Introspection | Promise<Introspection> {
  const now = app.now();
  if (!isUsable(token, now, successor)) return { active: false };
  const lineage = cascadeRevokedAncestor(app.store.tokens, token);
  if (lineage)
    return lineage.then((ancestor) => (ancestor ? { active: false } : introspectStanding(app, caller, token, now)));
  return introspectStanding(app, caller, token, now);
}

function introspectStanding(
  app: AppContext,
  caller: Caller,
  token: TokenRecord,
  now: number,
): Introspection | Promise<Introspection> {
  // A resource server introspecting the token it was handed is a use of it.
  const retiring = retireOnFirstUse(app, token, now, caller.peer);
  return retiring ? retiring.then(() => activeToken(token)) : activeToken(token);
}

function activeToken(token: TokenRecord): Introspection {
  // Built without an object spread: a literal with a spread is made field by field at run time.
  const active: ActiveToken = {
    scopes: token.scopes,
    expiresAt: token.expiresAt,
    issuedAt: token.createdAt,
    sub: token.ownerId,
    audiences: token.audiences,
    tokenId: token.id,
    familyId: token.familyId,
    kind: token.kind,
    ownerId: token.ownerId,
  };
  if (token.policy.dpopJkt !== undefined) active.cnfJkt = token.policy.dpopJkt;
  return { active: true, token: active };
}

/**
 * A JWT access token is active while its signature verifies against a published key, it has not
 * expired, and its source token stands (see jwtSourceStanding).
 */
async function introspectJwt(app: AppContext, caller: Caller, jwt: string): Promise<Introspection> {
  const privileged = mayIntrospectOthers(caller.token);
  const claims = await verifyRotorJwt(app, jwt);
  if (!claims) {
    if (!privileged) throw denied();
    return { active: false };
  }
  if (!privileged && claims.token_id !== caller.token.id) throw denied();
  const { standing, source } = await jwtSourceStanding(app, claims);
  if (!standing) return { active: false };
  const jwtInfo: NonNullable<ActiveToken['jwt']> = { iss: claims.iss, jti: claims.jti, clientId: claims.client_id };
  if (claims.act) jwtInfo.act = claims.act;
  return {
    active: true,
    token: {
      scopes: claims.scope === undefined ? [] : claims.scope.split(' '),
      expiresAt: claims.exp * 1000,
      issuedAt: claims.iat * 1000,
      sub: claims.sub,
      audiences: typeof claims.aud === 'string' ? [claims.aud] : claims.aud,
      tokenId: source?.id ?? '',
      familyId: source?.familyId ?? '',
      kind: source?.kind,
      ownerId: source?.ownerId ?? '',
      ...(typeof claims.cnf?.jkt === 'string' && { cnfJkt: claims.cnf.jkt }),
      jwt: jwtInfo,
    },
  };
}
