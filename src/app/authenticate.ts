import { RotorError, isRotorError } from '../domain/errors.js';
import { assertUsable, type TokenRecord } from '../domain/token.js';
import { parseSecret } from '../domain/token-secret.js';
import type { AppContext, CallMeta } from './context.js';
import type { TokenRepository } from './store-ports.js';

/** An authenticated caller: the token that signed the call. */
export interface Caller {
  token: TokenRecord;
  peer: string | null;
}

const BEARER = /^Bearer[ ]+([^ ]+)[ ]*$/i;

/** Extracts the credential of `authorization: Bearer <token>` (RFC 6750 §2.1). */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined || authorization === '') return undefined;
  const m = BEARER.exec(authorization);
  if (!m) throw new RotorError('unauthenticated', 'authorization header must be "Bearer <token>"');
  return m[1];
}

/**
 * Looks a presented secret up by its keyed digest (docs/rotation.md rule 1): parse and checksum first,
 * so garbage never reaches the database. Undefined for a well-formed but unknown secret.
 */
export async function findBySecret(app: AppContext, secret: string): Promise<TokenRecord | undefined> {
  const parsed = parseSecret(secret);
  return app.store.tokens.findByDigest(app.keys.secretDigest(parsed.secret));
}

/**
 * The successor a rotated token's usability depends on (docs/design.md, Domain: at most one
 * predecessor inside its overlap window). Loaded only for rotated tokens, which are rare on the hot path.
 */
export async function successorForUse(
  tokens: Pick<TokenRepository, 'findById'>,
  token: TokenRecord,
): Promise<TokenRecord | undefined> {
  if (token.revokeReason !== 'rotated' || token.successorId === null) return undefined;
  return tokens.findById(token.successorId);
}

/** A presented secret's token, usable now: what authenticating a bearer and a JWT request's subject share. */
export interface UsableToken {
  token: TokenRecord;
  /** The successor its usability was judged with (see successorForUse). */
  successor: TokenRecord | undefined;
  /** The app clock the judgement used. */
  now: number;
}

/**
 * Finds a presented secret's token and requires it usable (docs/rotation.md rules 1-2): unknown is
 * `invalid_token`, expired or revoked (outside an overlap window) assertUsable's codes.
 */
export async function usableBySecret(app: AppContext, secret: string): Promise<UsableToken> {
  const token = await findBySecret(app, secret);
  if (!token) throw new RotorError('invalid_token', 'token is unknown');
  const successor = await successorForUse(app.store.tokens, token);
  const now = app.now();
  assertUsable(token, now, successor);
  return { token, successor, now };
}

/**
 * Authenticates the caller's bearer token. Any failure is `unauthenticated`, whatever the
 * underlying reason, and the message never contains the credential.
 */
export async function authenticate(app: AppContext, meta: CallMeta): Promise<Caller> {
  const secret = bearerToken(meta.authorization);
  if (secret === undefined) throw new RotorError('unauthenticated', 'missing bearer token', { noCredentials: true });
  let usable: UsableToken;
  try {
    usable = await usableBySecret(app, secret);
  } catch (e) {
    throw asCallerCredentialError(e);
  }
  noteUse(app, usable.token, usable.now);
  meta.tokenId = usable.token.id;
  return { token: usable.token, peer: meta.peer };
}

/** Records `last_used_at` after the answer, off the request path; a failed write is only logged. */
export function noteUse(app: AppContext, token: TokenRecord, now: number): void {
  void app.store.tokens.touchLastUsed(token, now).catch((e: unknown) => {
    app.log.warn('could not record last use', { token_id: token.id, error: String(e) });
  });
}

/**
 * When the presented token is the caller's own credential, a token problem (unknown, malformed,
 * expired, revoked) is the caller's authentication failing: `unauthenticated`.
 */
export function asCallerCredentialError(e: unknown): unknown {
  if (isRotorError(e) && (e.code === 'invalid_token' || e.code === 'token_expired' || e.code === 'token_revoked')) {
    return new RotorError('unauthenticated', `bearer ${e.message}`);
  }
  return e;
}
