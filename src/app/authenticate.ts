import { RotorError, isRotorError } from '../domain/errors.js';
import { badProof } from '../domain/dpop-proof.js';
import { assertUsable, lineageRevokedError, type TokenRecord } from '../domain/token.js';
import { digestsEqual } from '../domain/token-keys.js';
import type { AppContext, CallMeta } from './context.js';
import { andThen } from './maybe-async.js';
import { proveBoundToken } from './dpop.js';
import type { DigestField, TokenRepository } from './store-ports.js';

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
 * so garbage never reaches the database. Undefined for a well-formed but unknown secret. A row the
 * in-process cache holds is the answer at once, with no promise to wait for (the hot path); any
 * other lookup is a promise (findByKeyedSecret). Callers `await` either.
 */
export function findBySecret(
  app: AppContext,
  secret: string,
): TokenRecord | undefined | Promise<TokenRecord | undefined> {
  // Not async: a malformed secret throws here (presentedDigest parses it), inside the caller's
  // own await.
  const digest = app.keys.presentedDigest(secret);
  const cached = app.store.tokens.cachedByDigest?.(digest);
  if (cached !== undefined) return cached;
  return findByKeyedSecret(app, app.store.tokens, secret, digest);
}

/**
 * Looks a (parsed) secret up under the current server key, then, only when that misses, under the
 * older ones in one query (docs/server-key.md): a row found there is re-digested under the current
 * key after the answer, the presented secret having proved it. When every row is current, a known
 * secret costs one digest and one lookup, as before key rotation existed.
 */
export async function findByKeyedSecret(
  app: AppContext,
  tokens: Pick<TokenRepository, 'findByDigest' | 'findByAnyDigest'>,
  secret: string,
  digest = app.keys.secretDigest(secret),
): Promise<TokenRecord | undefined> {
  const hit = await tokens.findByDigest(digest);
  if (hit !== undefined || app.keys.older.length === 0) return hit;
  // The current digest again in the same query: another call may have re-digested the row
  // between the two reads, and each statement sees what had committed when it began.
  const found = await tokens.findByAnyDigest([digest, ...app.keys.older.map((k) => k.secretDigest(secret))]);
  if (found !== undefined && !digestsEqual(found.secretDigest, digest))
    redigestLater(app, found, 'secretDigest', found.secretDigest, digest);
  return found;
}

/**
 * Moves one digest of `token` to the current server key, off the request path (outside any
 * transaction, like `noteUse`); a failed write is only logged, and the next use tries again.
 */
export function redigestLater(app: AppContext, token: TokenRecord, field: DigestField, from: string, to: string): void {
  void app.store.tokens.redigest(token.id, field, from, to).catch((e: unknown) => {
    app.log.warn('could not re-digest a token under the current server key', {
      token_id: token.id,
      error: String(e),
    });
  });
}

/**
 * The successor a rotated token's usability depends on (docs/design.md, Domain: at most one
 * predecessor inside its overlap window). Loaded only for rotated tokens, which are rare on the
 * hot path: for any other token the answer is `undefined` at once, with no promise to wait for
 * (the hot path writes `const s = successorForUse(…); … s && (await s)`).
 */
export function successorForUse(
  tokens: Pick<TokenRepository, 'findById'>,
  token: TokenRecord,
): Promise<TokenRecord | undefined> | undefined {
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
 * `invalid_token`, expired or revoked (outside an overlap window) assertUsable's codes. Answers at
 * once (a value, or a thrown error) when every row it needs is in the cache; a promise otherwise.
 */
export function usableBySecret(app: AppContext, secret: string): UsableToken | Promise<UsableToken> {
  return andThen(findBySecret(app, secret), (token) => usableToken(app, token));
}

function usableToken(app: AppContext, token: TokenRecord | undefined): UsableToken | Promise<UsableToken> {
  if (!token) throw new RotorError('invalid_token', 'token is unknown');
  const pending = successorForUse(app.store.tokens, token);
  return pending ? pending.then((successor) => judgeUsable(app, token, successor)) : judgeUsable(app, token, undefined);
}

function judgeUsable(
  app: AppContext,
  token: TokenRecord,
  successor: TokenRecord | undefined,
): UsableToken | Promise<UsableToken> {
  const now = app.now();
  assertUsable(token, now, successor);
  const usable: UsableToken = { token, successor, now };
  const lineage = assertLineageStands(app.store.tokens, token);
  return lineage ? lineage.then(() => usable) : usable;
}

/**
 * The nearest ancestor of `token` that a revocation with cascade reached, by walking `parent_id`
 * (docs/rotation.md, "Lineage and cascade"); undefined when none did. The token's own mark is not
 * looked at: a cascade revokes (or, for a rotated token, ends the window of) every token it marks,
 * so its own state already answers, with its own message (rules 2 and 3). One
 * token read per ancestor, from the token cache outside transactions; a token created by
 * bootstrap or federation has no parent and costs nothing (`undefined` at once, no promise). A
 * parent deleted by retention ends the walk (it ended long ago, and a cascade that reached it
 * revoked its descendants too).
 */
export function cascadeRevokedAncestor(
  tokens: Pick<TokenRepository, 'findById' | 'cachedById'>,
  token: TokenRecord,
): Promise<TokenRecord | undefined> | undefined {
  if (token.parentId === null) return undefined;
  const walk = new LineageWalk(token);
  // Ancestors in the cache (the usual case: all of them) are walked at once; from the first that
  // is not, the walk goes on through reads. A found ancestor is rare.
  while (walk.parentId !== null && tokens.cachedById !== undefined) {
    if (walk.looped()) return Promise.resolve(token);
    const parent = tokens.cachedById(walk.parentId);
    if (parent === undefined) return walkLineage(tokens, walk);
    const found = walk.past(parent);
    if (found) return Promise.resolve(found);
  }
  return walk.parentId === null ? undefined : walkLineage(tokens, walk);
}

async function walkLineage(
  tokens: Pick<TokenRepository, 'findById'>,
  walk: LineageWalk,
): Promise<TokenRecord | undefined> {
  while (walk.parentId !== null) {
    if (walk.looped()) return walk.token;
    const parent = await tokens.findById(walk.parentId);
    if (!parent) return undefined;
    const found = walk.past(parent);
    if (found) return found;
  }
  return undefined;
}

/** Where a lineage walk is: the next ancestor to read, and the ones walked past. */
class LineageWalk {
  parentId: string | null;
  // Made only when the walk goes on past the first ancestor, as most tokens are one step from a
  // root (a bootstrap token).
  private seen: Set<string> | undefined;

  constructor(readonly token: TokenRecord) {
    this.parentId = token.parentId;
  }

  /** Parents are always older than their children, so a loop cannot happen; fail closed if it did. */
  looped(): boolean {
    return this.parentId === this.token.id || (this.parentId !== null && this.seen?.has(this.parentId) === true);
  }

  /** Steps past `parent` (the token `parentId` named); returns it when a cascade reached it. */
  past(parent: TokenRecord): TokenRecord | undefined {
    if (parent.cascadeRevokedAt !== null) return parent;
    if (parent.parentId !== null) {
      this.seen ??= new Set();
      this.seen.add(parent.id);
    }
    this.parentId = parent.parentId;
    return undefined;
  }
}

/**
 * Refuses a token whose ancestor was revoked with cascade, as `token_revoked` naming when;
 * `undefined` at once (nothing to wait for) for a token without a parent.
 */
export function assertLineageStands(
  tokens: Pick<TokenRepository, 'findById' | 'cachedById'>,
  token: TokenRecord,
): Promise<void> | undefined {
  const walk = cascadeRevokedAncestor(tokens, token);
  return walk?.then((ancestor) => {
    if (ancestor) throw lineageRevokedError(ancestor);
  });
}

/**
 * Retire on first use (docs/rotation.md, "Retire on first use"): the first use of a successor
 * whose predecessor is still inside its window ends that window now, on every replica (the
 * `predecessor_retired` event names the predecessor, so its row leaves every replica's cache).
 * Only that first use writes: the successor's `retire_predecessor_until` is cleared by it, and
 * every later use (or any use after the window) returns before touching the database. A failed
 * write is logged and the call goes on: the predecessor then stays usable at most until the
 * window's hard bound (`overlap_seconds`), and the next use tries again. `undefined` at once
 * (nothing to wait for) when there is nothing to retire, which is almost every call.
 */
export function retireOnFirstUse(
  app: AppContext,
  token: TokenRecord,
  now: number,
  peer: string | null,
): Promise<void> | undefined {
  const until = token.retirePredecessorUntil;
  const predecessorId = token.previousId;
  if (until === null || predecessorId === null || now >= until || token.revokedAt !== null) return undefined;
  return retirePredecessor(app, token, predecessorId, now, peer);
}

async function retirePredecessor(
  app: AppContext,
  token: TokenRecord,
  predecessorId: string,
  now: number,
  peer: string | null,
): Promise<void> {
  try {
    await app.store.transaction(
      async (tx) => {
        if (!(await tx.tokens.clearRetirePending(token.id))) return;
        if (!(await tx.tokens.endOverlap(predecessorId, now))) return;
        await tx.events.append([
          {
            type: 'predecessor_retired',
            tokenId: predecessorId,
            familyId: token.familyId,
            successorId: token.id,
            actor: token.id,
            peer,
            act: null,
            reason: null,
            occurredAt: now,
          },
        ]);
      },
      { family: token.familyId },
    );
  } catch (e) {
    app.log.warn('could not retire the predecessor on first use', { token_id: token.id, error: String(e) });
  }
}

/**
 * Authenticates the caller's bearer token. Any failure is `unauthenticated`, whatever the
 * underlying reason, and the message never contains the credential. Answers at once (a value or
 * a thrown error) when the token and its lineage are in the cache and nothing has to be written or
 * proved; a promise otherwise. Callers `await` it either way.
 */
export function authenticate(app: AppContext, meta: CallMeta): Caller | Promise<Caller> {
  const credential = presentedCredential(meta.authorization);
  if (credential === undefined)
    throw new RotorError('unauthenticated', 'missing bearer token', { noCredentials: true });
  let usable: UsableToken | Promise<UsableToken>;
  try {
    usable = usableBySecret(app, credential.secret);
  } catch (e) {
    throw asCallerCredentialError(e);
  }
  if (usable instanceof Promise)
    return usable.then(
      (u) => authenticated(app, meta, credential, u),
      (e: unknown) => {
        throw asCallerCredentialError(e);
      },
    );
  return authenticated(app, meta, credential, usable);
}

function authenticated(
  app: AppContext,
  meta: CallMeta,
  credential: PresentedCredential,
  usable: UsableToken,
): Caller | Promise<Caller> {
  // RFC 9449 §7: a bound caller proves its key on every call (a branch only for bound tokens).
  if (usable.token.policy.dpopJkt !== undefined || credential.scheme === 'dpop') {
    checkScheme(usable.token, credential.scheme);
    return proveBoundToken(app, meta.dpop, usable.token, credential.secret, 'call').then(() =>
      retired(app, meta, usable),
    );
  }
  return retired(app, meta, usable);
}

function retired(app: AppContext, meta: CallMeta, usable: UsableToken): Caller | Promise<Caller> {
  const retiring = retireOnFirstUse(app, usable.token, usable.now, meta.peer);
  return retiring ? retiring.then(() => caller(app, meta, usable)) : caller(app, meta, usable);
}

function caller(app: AppContext, meta: CallMeta, usable: UsableToken): Caller {
  noteUse(app, usable.token, usable.now);
  meta.tokenId = usable.token.id;
  return { token: usable.token, peer: meta.peer };
}

/** Records `last_used_at` after the answer, off the request path; a failed write is only logged. */
export function noteUse(app: AppContext, token: TokenRecord, now: number): void {
  void app.store.tokens.touchLastUsed(token, now)?.catch((e: unknown) => {
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
