import { RotorError } from '../domain/errors.js';
import { requireAudiences, requireId, requireIdempotencyKey } from '../domain/input-limits.js';
import { mintSuccessor, type MintedToken } from '../domain/new-token.js';
import { alreadyRotated, decideRotation, type RefusedRetryKeys, type RetryRefusal } from '../domain/rotation.js';
import { isAdmin, requireRotateById, successorExpiryFor } from '../domain/authorization.js';
import { normalizeScopes } from '../domain/scopes.js';
import { lineageRevokedError, type TokenRecord } from '../domain/token.js';
import { digestKeyId } from '../domain/server-keys.js';
import { digestsEqual } from '../domain/token-keys.js';
import { formatSecret } from '../domain/token-secret.js';
import {
  asCallerCredentialError,
  cascadeRevokedAncestor,
  authenticate,
  checkScheme,
  findByKeyedSecret,
  presentedCredential,
  redigestLater,
  type Caller,
  type PresentedCredential,
} from './authenticate.js';
import { cascadeRevoke } from './cascade.js';
import { successorBinding, type DpopRequest, type Presentation } from './dpop.js';
import type { AppContext, CallMeta } from './context.js';
import type { Repositories } from './store-ports.js';
import { revokeFamilyIn } from './revocation.js';
import { eventOf, type Who } from './token-service.js';
import type { WorkloadClaims } from '../domain/workload-binding.js';
import { verifyActorToken } from './workload-proof.js';

/** Which token to rotate and how it was named. */
export type RotationTarget =
  /**
   * The holder presents the secret (RotateToken with an empty id: `use` 'call', with the scheme of
   * its authorization header; or RFC 8693 exchange: `use` 'subject'), with the request's DPoP proof.
   */
  | {
      mode: 'presented';
      secret: string;
      use?: Presentation;
      scheme?: PresentedCredential['scheme'];
      dpop?: DpopRequest;
    }
  /** An admin or owner names the token by id. */
  | { mode: 'by_id'; id: string; caller: Caller };

/** The successor's requested attributes; empty/undefined keeps the predecessor's. */
export interface RotationOptions {
  idempotencyKey: string | undefined;
  scopes: readonly string[];
  audiences: readonly string[];
  expiresAt: number | undefined;
  peer: string | null;
  /** RFC 8693 `actor_token` and its type: the workload's proof for a bound token (rule 4). */
  actorToken?: string;
  actorTokenType?: string;
}

/** Thrown inside the transaction when the compare-and-set loses; the transaction rolls back. */
class LostRace extends Error {}

const MAX_ATTEMPTS = 3;

/** What a rotation attempt resolved to; `refused` is thrown once its transaction (which logged the refusal) has committed. */
type Outcome =
  | { kind: 'minted'; minted: MintedToken }
  | { kind: 'refused'; error: RotorError }
  | {
      kind: 'reuse';
      current: TokenRecord;
      revoked: number;
      cause: 'presented_again' | 'wrong_retry_keys';
      /** When the family was revoked (the cascade's time). */
      at: number;
    };

const NONE_REFUSED: RefusedRetryKeys = { racing: 0, late: 0 };

/** The answers to reuse, by what gave it away. */
const REUSE_MESSAGES = {
  presented_again: 'token was already rotated: reuse detected, every token of its family is now revoked',
  wrong_retry_keys:
    'too many wrong idempotency keys for a rotated token: treated as reuse, every token of its family is now revoked',
} as const;

/**
 * Rotates a token under docs/rotation.md rules 1-7.
 *
 * Fast path: the current row is read outside any transaction (possibly from the cache), and when
 * the decision is an ordinary rotation the successor is minted before the transaction opens, so
 * the transaction holds the connection only for the compare-and-set, the insert and the events.
 * The compare-and-set (`WHERE revoked_at IS NULL`) is what makes this safe: kind, scopes and
 * expiry of a row never change, and any concurrent rotation or revocation makes it fail.
 *
 * Every other case, and any lost race, runs the authoritative path: load, decide and act in one
 * transaction (replay an idempotent retry, answer "already rotated", or revoke the family on
 * reuse). A lost compare-and-set there re-runs the transaction, where rule 3 then answers. Both
 * paths' transactions hold the family's lock (`Store.transaction` with `family`, and
 * `Store.commitRotation`), like every other change to a family.
 */
export async function rotate(app: AppContext, target: RotationTarget, opts: RotationOptions): Promise<MintedToken> {
  const receivedAt = app.now();
  const key = opts.idempotencyKey === undefined ? undefined : requireIdempotencyKey(opts.idempotencyKey);
  const lookup: Prepared['lookup'] =
    target.mode === 'presented'
      ? { secret: target.secret, digest: app.keys.presentedDigest(target.secret), seed: target.secret }
      : { id: requireId('id', target.id), seed: target.id };
  // Rule 4, I/O half: the actor JWT is verified before any decision; the domain gets its claims.
  // A retry may present the same JWT again, but only for the same token and idempotency key. Only
  // a token with a workload binding gets it verified (and its jti spent, and its issuer's keys
  // fetched); the binding is inherited and never changes, so reading it first cannot go stale.
  const retry =
    key === undefined ? undefined : { tokenRef: 'digest' in lookup ? lookup.digest : lookup.id, idempotencyKey: key };
  const found = await loadBy(app, app.store.tokens, lookup);
  if (!found) throw notFound(target);
  // Proof first (docs/dpop.md): nothing is decided about a token bound to a key, and no reuse is
  // detected, before the request proves that key. The binding never changes, so reading it first
  // cannot go stale.
  const dpopJkt = target.mode === 'presented' ? await holderBinding(app, target, found) : undefined;
  const sentActor = (opts.actorToken ?? '') !== '' || (opts.actorTokenType ?? '') !== '';
  const bound = sentActor && found.policy.workloadBinding !== undefined;
  const proof = await verifyActorToken(app, opts.actorToken, opts.actorTokenType, retry, bound);
  const req: Prepared = {
    target,
    opts,
    key,
    keyDigest: key === undefined ? undefined : app.keys.idempotencyDigest(key),
    scopes: normalizeScopes(opts.scopes),
    audiences: requireAudiences('audience', opts.audiences),
    lookup,
    actor: proof?.claims,
    actorRejection: proof?.rejection,
    dpopJkt,
    receivedAt,
  };
  const current = found;
  // A token whose ancestor was revoked with cascade is revoked, even before the cascade's
  // batches reach it (docs/rotation.md, "Lineage and cascade"); its family's lineage never
  // changes, so checking it before the transaction is enough.
  // Named by id, it is the target's state that is wrong, not the caller's credential: rule 2's
  // `not_rotatable`, as for a target its own revocation reached.
  const ancestor = await cascadeRevokedAncestor(app.store.tokens, current);
  if (ancestor) {
    const refused = lineageRevokedError(ancestor);
    if (target.mode === 'presented') throw refused;
    // The caller's right comes first, as for any other target (`decide`).
    requireRotateById(target.caller.token, current);
    throw new RotorError('not_rotatable', `token ${current.id} cannot be rotated: ${refused.message}`);
  }
  const fast = await tryFastRotation(app, req, current);
  if (fast) return fast;
  for (let attempt = 1; ; attempt++) {
    try {
      // A token's family never changes, so the row read above names the lock to take.
      const outcome = await app.store.transaction((tx) => decideAndAct(app, tx, req), { family: current.familyId });
      if (outcome.kind === 'minted') return outcome.minted;
      if (outcome.kind === 'refused') throw outcome.error;
      // Reuse detection revokes with cascade: the family was marked in its transaction, so its
      // descendants are already refused; the batches revoke them for the record.
      let cascaded = 0;
      try {
        cascaded = (
          await cascadeRevoke(
            app,
            actorOf(req, outcome.current),
            { familyIds: [outcome.current.familyId] },
            outcome.at,
            false,
          )
        ).count;
      } catch (e) {
        // The mark already refuses every descendant; the answer to reuse must not change.
        app.log.error('cascade after reuse detection did not finish', {
          family_id: outcome.current.familyId,
          error: String(e),
        });
      }
      app.log.warn('token reuse detected; family revoked', {
        token_id: outcome.current.id,
        family_id: outcome.current.familyId,
        revoked: outcome.revoked,
        cascade_revoked: cascaded,
        cause: outcome.cause,
        peer: opts.peer,
      });
      throw new RotorError('reuse_detected', REUSE_MESSAGES[outcome.cause], { familyId: outcome.current.familyId });
    } catch (e) {
      if (e instanceof LostRace && attempt < MAX_ATTEMPTS) continue;
      if (e instanceof LostRace)
        throw new RotorError('unavailable', 'rotation kept losing to concurrent rotations; retry');
      throw e;
    }
  }
}

/** A validated rotation request. */
interface Prepared {
  target: RotationTarget;
  opts: RotationOptions;
  key: string | undefined;
  keyDigest: string | undefined;
  scopes: string[];
  audiences: string[];
  /** The presented secret (and its digest under the current server key), or the id named. */
  lookup: { secret: string; digest: string; seed: string } | { id: string; seed: string };
  /** The verified actor JWT, when the request carried one. */
  actor: WorkloadClaims | undefined;
  /** Why the request's actor JWT was rejected, raised by rule 4. */
  actorRejection: RotorError | undefined;
  /** The key the successor is bound to: the token's own binding, or the upgrade's (docs/dpop.md). */
  dpopJkt: string | undefined;
  /** When the call reached `rotate` (rule 3: only a later wrong key counts as a guess). */
  receivedAt: number;
}

/** The holder's proof for a presented token, and the binding its successor gets (docs/dpop.md). */
async function holderBinding(
  app: AppContext,
  target: Extract<RotationTarget, { mode: 'presented' }>,
  token: TokenRecord,
): Promise<string | undefined> {
  if (target.use === 'call') checkScheme(token, target.scheme ?? 'bearer');
  return successorBinding(app, target.dpop, token, target.secret, target.use ?? 'subject');
}

function load(app: AppContext, repo: Repositories['tokens'], req: Prepared): Promise<TokenRecord | undefined> {
  return loadBy(app, repo, req.lookup);
}

/** By id, or by the presented secret under the current server key and then the older ones (docs/server-key.md). */
function loadBy(
  app: AppContext,
  repo: Repositories['tokens'],
  lookup: Prepared['lookup'],
): Promise<TokenRecord | undefined> {
  return 'secret' in lookup ? findByKeyedSecret(app, repo, lookup.secret, lookup.digest) : repo.findById(lookup.id);
}

/**
 * The request's idempotency key digested as `current` stores its own: a rotated token keeps the
 * digest of the key its rotation was made with, under the server key of that time, so a retry
 * across a server key change still matches (docs/server-key.md). Nothing extra is computed for a
 * token never rotated or rotated under the current key.
 */
function retryKeyDigestFor(app: AppContext, req: Prepared, current: TokenRecord): string | undefined {
  const stored = current.rotationKeyDigest;
  if (req.key === undefined || req.keyDigest === undefined || stored === null) return req.keyDigest;
  if (digestKeyId(stored) === app.keys.id) return req.keyDigest;
  for (const k of app.keys.keysOf(stored)) {
    const d = k.idempotencyDigest(req.key);
    if (digestsEqual(d, stored)) {
      redigestLater(app, current, 'rotationKeyDigest', stored, req.keyDigest);
      return d;
    }
  }
  return req.keyDigest;
}

function notFound(target: RotationTarget): RotorError {
  return target.mode === 'presented'
    ? new RotorError('invalid_token', 'token is unknown')
    : new RotorError('not_found', `token ${target.id} not found`);
}

function actorOf(req: Prepared, current: TokenRecord): Who {
  const who: Who = {
    actor: req.target.mode === 'by_id' ? req.target.caller.token.id : current.id,
    peer: req.opts.peer,
  };
  if (req.actor !== undefined) who.act = { iss: req.actor.iss, sub: req.actor.sub };
  return who;
}

function decide(
  req: Prepared,
  current: TokenRecord,
  successor: TokenRecord | undefined,
  now: number,
  app: AppContext,
  refusedRetryKeys = NONE_REFUSED,
) {
  if (req.target.mode === 'by_id') requireRotateById(req.target.caller.token, current);
  const decision = decideRotation({
    mode: req.target.mode,
    current,
    successor,
    idempotencyKeyDigest: retryKeyDigestFor(app, req, current),
    scopes: req.scopes,
    audiences: req.audiences,
    expiresAt: req.opts.expiresAt,
    actor: req.actor,
    actorRejection: req.actorRejection,
    byAdmin: req.target.mode === 'by_id' && isAdmin(req.target.caller.token),
    receivedAt: req.receivedAt,
    refusedRetryKeys,
    now,
    limits: app.limits,
  });
  if (decision.type !== 'rotate' || req.target.mode !== 'by_id') return decision;
  return {
    ...decision,
    expiresAt: successorExpiryFor(req.target.caller.token, decision.expiresAt, req.opts.expiresAt !== undefined),
  };
}

function mint(
  app: AppContext,
  req: Prepared,
  current: TokenRecord,
  decision: { scopes: string[]; audiences: string[]; expiresAt: number },
  now: number,
): MintedToken {
  const bytes = req.key === undefined ? app.random : app.keys.successorBytes(req.lookup.seed, req.key);
  const attrs = { scopes: decision.scopes, expiresAt: decision.expiresAt, audiences: decision.audiences };
  const minted = mintSuccessor(current, attrs, now, bytes, app.random, app.keys);
  // An upgrade: an unbound token rotated with a proof that asks for a binding (docs/dpop.md).
  if (req.dpopJkt !== undefined && current.policy.dpopJkt === undefined)
    minted.record = { ...minted.record, policy: { ...current.policy, dpopJkt: req.dpopJkt } };
  return minted;
}

/**
 * The fast path: an active token, read outside the transaction, rotated with a short
 * transaction. Undefined when anything else applies (the authoritative path then decides).
 */
async function tryFastRotation(app: AppContext, req: Prepared, current: TokenRecord): Promise<MintedToken | undefined> {
  if (current.revokedAt !== null) return undefined;
  const now = app.now();
  const decision = decide(req, current, undefined, now, app);
  if (decision.type !== 'rotate') return undefined;
  // The rotation brake (docs/limits.md), outside any transaction: a counter on the pool must never
  // wait while this call holds a pooled connection and its family's lock. A token the authoritative
  // path rotates was active here too, so this path decided to rotate it first: every rotation is
  // counted here, once; replays and refusals never are.
  await app.brakes?.take('rotations', current.familyId);
  const minted = mint(app, req, current, decision, now);
  // Its own short transaction on the driver (Store.commitRotation). The clock is read once that
  // transaction has begun, as in commitRotation below, so a token that expired while the call
  // waited for the connection loses the compare-and-set (rule 2).
  const who = actorOf(req, current);
  const won = await app.store.commitRotation({
    currentId: current.id,
    successor: minted.record,
    rotationKeyDigest: req.keyDigest ?? null,
    clock: app.now,
    events: (at) => rotationEvents(who, current, minted.record, at),
  });
  return won ? minted : undefined;
}

/** The two events of a rotation: the predecessor rotated, the successor created. */
function rotationEvents(who: Who, current: TokenRecord, successor: TokenRecord, now: number) {
  return [
    eventOf(who, {
      type: 'rotated',
      tokenId: current.id,
      familyId: current.familyId,
      successorId: successor.id,
      reason: 'rotated',
      occurredAt: now,
    }),
    eventOf(who, {
      type: 'created',
      tokenId: successor.id,
      familyId: successor.familyId,
      successorId: null,
      reason: 'rotated',
      occurredAt: now,
    }),
  ];
}

/** The audit of a retry of a rotated token: answered with its successor again, or refused for a wrong key. */
function retryEvent(
  who: Who,
  type: 'replayed' | 'retry_refused',
  current: TokenRecord,
  successor: TokenRecord,
  now: number,
  reason: RetryRefusal | null = null,
) {
  return eventOf(who, {
    type,
    tokenId: current.id,
    familyId: current.familyId,
    successorId: successor.id,
    reason,
    occurredAt: now,
  });
}

/** The wrong keys refused so far for a rotated token, from its `retry_refused` events. */
async function refusedRetryKeys(tx: Repositories, tokenId: string): Promise<RefusedRetryKeys> {
  const byReason = await tx.events.countByReason(tokenId, 'retry_refused');
  return { racing: byReason.racing_rotation ?? 0, late: byReason.wrong_idempotency_key ?? 0 };
}

/** The authoritative path: load, decide and act inside one transaction. */
async function decideAndAct(app: AppContext, tx: Repositories, req: Prepared): Promise<Outcome> {
  const current = await load(app, tx.tokens, req);
  if (!current) throw notFound(req.target);
  const now = app.now();
  const successor = current.successorId ? await tx.tokens.findById(current.successorId) : undefined;
  // Only a keyed request for a rotated token can be a wrong key (rule 3): count the earlier ones.
  const refused =
    req.keyDigest !== undefined && current.revokeReason === 'rotated'
      ? await refusedRetryKeys(tx, current.id)
      : NONE_REFUSED;
  const decision = decide(req, current, successor, now, app, refused);
  const who = actorOf(req, current);
  switch (decision.type) {
    case 'replay': {
      const minted = replay(app, current, decision.successor, req.lookup.seed, req.key!);
      await tx.events.append([retryEvent(who, 'replayed', current, decision.successor, now)]);
      return { kind: 'minted', minted };
    }
    case 'refuse_retry':
      await tx.events.append([retryEvent(who, 'retry_refused', current, decision.successor, now, decision.reason)]);
      return { kind: 'refused', error: alreadyRotated(decision.successor.id) };
    case 'reuse':
      // Rule 3: the family is revoked in the same transaction that detected the reuse.
      return {
        kind: 'reuse',
        current,
        cause: decision.cause,
        revoked: await revokeFamilyIn(tx, who, current.familyId, 'reuse_detected', now, true),
        at: now,
      };
    case 'rotate': {
      const minted = mint(app, req, current, decision, now);
      await commitRotation(tx, current, minted.record, req.keyDigest, app.now, who);
      return { kind: 'minted', minted };
    }
  }
}

async function commitRotation(
  tx: Repositories,
  current: TokenRecord,
  successor: TokenRecord,
  keyDigest: string | undefined,
  clock: () => number,
  who: Who,
): Promise<void> {
  const now = clock();
  // Compare-and-set first: a loser stops here (its row lock waits for the winner) instead of
  // inserting a successor whose deterministic secret (same idempotency key) collides on the
  // unique secret digest, which surfaced as INTERNAL on PostgreSQL; and on SQLite a write lock
  // held by another process costs one busy timeout, not one per statement. Its clock is read
  // here, inside the transaction, so a token that expired while the request waited is refused
  // (rule 2).
  if (!(await tx.tokens.markRotated(current.id, successor.id, keyDigest ?? null, now))) throw new LostRace();
  // One after the other: on SQLite an INSERT that fails with SQLITE_FULL, IOERR or NOMEM ends the
  // transaction by itself, and a second INSERT already queued would then commit alone.
  await tx.tokens.insert(successor);
  await tx.events.append(rotationEvents(who, current, successor, now));
}

/**
 * docs/rotation.md rule 3, idempotent retry: re-derive the successor secret from (seed, key) and check
 * it against the stored digest, so the same successor is returned without storing plaintext. The
 * successor may have been made under an older server key (docs/server-key.md): its secret is
 * re-derived under each configured key until one matches the digest (under the key the digest
 * names), and its digest then moves to the current key.
 */
function replay(app: AppContext, current: TokenRecord, successor: TokenRecord, seed: string, key: string): MintedToken {
  // The key that derived the secret (the current key of the replica that rotated) and the key of
  // its stored digest differ once the successor has been re-digested: try each configured key
  // for the first, the current one first, and check under the key the digest names.
  const digestKeys = app.keys.keysOf(successor.secretDigest);
  for (const maker of [app.keys, ...app.keys.older]) {
    const secret = formatSecret(current.kind, maker.successorBytes(seed, key));
    const under = digestKeys.find((k) => digestsEqual(k.secretDigest(secret), successor.secretDigest));
    if (under === undefined) continue;
    if (under.id !== app.keys.id) {
      redigestLater(app, successor, 'secretDigest', successor.secretDigest, app.keys.secretDigest(secret));
    }
    return { record: successor, secret };
  }
  throw alreadyRotated(successor.id);
}

/** RotateToken: by id (admin or owner), or the caller's own bearer token when the id is empty. */
export async function rotateToken(
  app: AppContext,
  meta: CallMeta,
  req: {
    id: string;
    idempotencyKey: string;
    scopes: readonly string[];
    expiresAt: number | undefined;
    actorToken?: string;
    actorTokenType?: string;
  },
): Promise<MintedToken> {
  const opts: RotationOptions = {
    idempotencyKey: req.idempotencyKey === '' ? undefined : req.idempotencyKey,
    scopes: req.scopes,
    audiences: [],
    expiresAt: req.expiresAt,
    peer: meta.peer,
    actorToken: req.actorToken,
    actorTokenType: req.actorTokenType,
  };
  if (req.id !== '') return rotate(app, { mode: 'by_id', id: req.id, caller: await authenticate(app, meta) }, opts);
  const credential = presentedCredential(meta.authorization);
  if (credential === undefined)
    throw new RotorError('unauthenticated', 'missing bearer token', { noCredentials: true });
  try {
    const minted = await rotate(
      app,
      { mode: 'presented', secret: credential.secret, use: 'call', scheme: credential.scheme, dpop: meta.dpop },
      opts,
    );
    meta.tokenId = minted.record.previousId ?? undefined;
    return minted;
  } catch (e) {
    throw asCallerCredentialError(e);
  }
}
