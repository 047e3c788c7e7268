import { RotorError, isRotorError } from '../domain/errors.js';
import { assertUsable, type TokenRecord } from '../domain/token.js';
import { badProof } from '../domain/dpop-proof.js';
import { parseSecret } from '../domain/token-secret.js';
import type { AppContext, CallMeta } from './context.js';
import { proveBoundToken } from './dpop.js';
import type { TokenRepository } from './store-ports.js';

/** An authenticated caller: the token that signed the call. */
export interface Caller {
  token: TokenRecord;
  peer: string | null;
}

const CREDENTIAL = /^(Bearer|DPoP)[ ]+([^ ]+)[ ]*$/i;

/** A token presented in the `authorization` header, and the scheme it was presented with. */
export interface PresentedCredential {
  /** `bearer` (RFC 6750 §2.1) or `dpop` (RFC 9449 §7.1). */
  scheme: 'bearer' | 'dpop';
  secret: string;
}

/** Extracts the credential of `authorization: Bearer <token>` or `authorization: DPoP <token>`. */
export function presentedCredential(authorization: string | undefined): PresentedCredential | undefined {
  if (authorization === undefined || authorization === '') return undefined;
  const m = CREDENTIAL.exec(authorization);
  if (!m) throw new RotorError('unauthenticated', 'authorization header must be "Bearer <token>" or "DPoP <token>"');
  return { scheme: m[1]!.toLowerCase() === 'dpop' ? 'dpop' : 'bearer', secret: m[2]! };
}

/**
 * The scheme rule of RFC 9449 §7.1: a token bound to a key is presented as `DPoP <token>` (a bound
 * token sent as `Bearer` is refused like a bad proof), an unbound one as `Bearer <token>`.
 */
export function checkScheme(token: TokenRecord, scheme: PresentedCredential['scheme']): void {
  if (token.policy.dpopJkt !== undefined && scheme !== 'dpop')
    throw badProof('missing: the token is bound to a key; send it as "authorization: DPoP <token>" with a proof', true);
  if (token.policy.dpopJkt === undefined && scheme === 'dpop')
    throw new RotorError('unauthenticated', 'token is not bound to a key: send it as "authorization: Bearer <token>"');
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
  const credential = presentedCredential(meta.authorization);
  if (credential === undefined)
    throw new RotorError('unauthenticated', 'missing bearer token', { noCredentials: true });
  let usable: UsableToken;
  try {
    usable = await usableBySecret(app, credential.secret);
  } catch (e) {
    throw asCallerCredentialError(e);
  }
  // RFC 9449 §7: a bound caller proves its key on every call (a branch only for bound tokens).
  if (usable.token.policy.dpopJkt !== undefined || credential.scheme === 'dpop') {
    checkScheme(usable.token, credential.scheme);
    await proveBoundToken(app, meta.dpop, usable.token, credential.secret, 'call');
  }
  noteUse(app, usable.token, usable.now);
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
