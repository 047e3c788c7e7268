import { RotorError, isRotorError } from '../domain/errors.js';
import { requireAudiences, requireId, requireIdempotencyKey } from '../domain/input-limits.js';
import { mintSuccessor, type MintedToken } from '../domain/new-token.js';
import { decideRotation, type RotationMode } from '../domain/rotation.js';
import { normalizeScopes } from '../domain/scopes.js';
import type { TokenRecord } from '../domain/token.js';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, validateExchange, type ExchangeParams } from '../domain/token-exchange.js';
import { digestsEqual } from '../domain/token-keys.js';
import { formatSecret, parseSecret } from '../domain/token-secret.js';
import { authenticate, bearerToken, requireManage, type Caller } from './authenticate.js';
import type { AppContext, CallMeta } from './context.js';
import type { Repositories } from './store-ports.js';
import { eventOf, revokeFamilyIn } from './token-service.js';

/** Which token to rotate and how it was named. */
export type RotationTarget =
  /** The holder presents the secret (RotateToken with an empty id, or RFC 8693 exchange). */
  | { mode: 'presented'; secret: string }
  /** An admin or owner names the token by id. */
  | { mode: 'by_id'; id: string; caller: Caller };

/** The successor's requested attributes; empty/undefined keeps the predecessor's. */
export interface RotationOptions {
  idempotencyKey: string | undefined;
  scopes: readonly string[];
  audiences: readonly string[];
  expiresAt: number | undefined;
  peer: string | null;
}

/** Thrown inside the transaction when the compare-and-set loses; the transaction rolls back. */
class LostRace extends Error {}

const MAX_ATTEMPTS = 3;

/**
 * Rotates a token under DESIGN.md rules 1-7 in one transaction: load, decide, then either
 * compare-and-set and insert the successor, replay an idempotent retry, or revoke the family on
 * reuse. A lost compare-and-set re-runs the transaction, where rule 3 then answers.
 */
export async function rotate(app: AppContext, target: RotationTarget, opts: RotationOptions): Promise<MintedToken> {
  const key = opts.idempotencyKey === undefined ? undefined : requireIdempotencyKey(opts.idempotencyKey);
  const keyDigest = key === undefined ? undefined : app.keys.idempotencyDigest(key);
  const scopes = normalizeScopes(opts.scopes);
  const audiences = requireAudiences('audience', opts.audiences);
  const lookup: { digest: string; seed: string } | { id: string; seed: string } =
    target.mode === 'presented'
      ? { digest: app.keys.secretDigest(parseSecret(target.secret).secret), seed: target.secret }
      : { id: requireId('id', target.id), seed: target.id };

  for (let attempt = 1; ; attempt++) {
    try {
      const outcome = await app.store.transaction(async (tx) => {
        const current = 'digest' in lookup ? await tx.tokens.findByDigest(lookup.digest) : await tx.tokens.findById(lookup.id);
        if (!current) {
          throw target.mode === 'presented'
            ? new RotorError('invalid_token', 'token is unknown')
            : new RotorError('not_found', `token ${target.id} not found`);
        }
        if (target.mode === 'by_id') requireManage(target.caller, current);
        const now = app.now();
        const successor = current.successorId ? await tx.tokens.findById(current.successorId) : undefined;
        const decision = decideRotation({
          mode: target.mode,
          current,
          successor,
          idempotencyKeyDigest: keyDigest,
          scopes,
          expiresAt: opts.expiresAt,
          now,
          limits: app.limits,
        });
        const who = { actor: target.mode === 'by_id' ? target.caller.token.id : current.id, peer: opts.peer };
        switch (decision.type) {
          case 'replay':
            return { kind: 'minted' as const, minted: replay(app, current, decision.successor, lookup.seed, key!) };
          case 'reuse':
            // Rule 3: the family is revoked in the same transaction that detected the reuse.
            return { kind: 'reuse' as const, current, revoked: await revokeFamilyIn(tx, who, current.familyId, 'reuse_detected', now) };
          case 'rotate': {
            const bytes = key === undefined ? app.random : app.keys.successorBytes(lookup.seed, key);
            const attrs = { scopes: decision.scopes, expiresAt: decision.expiresAt, audiences: narrowAudiences(current, audiences) };
            const minted = mintSuccessor(current, attrs, now, bytes, app.random, app.keys);
            await commitRotation(tx, current, minted.record, keyDigest, now, who);
            return { kind: 'minted' as const, minted };
          }
        }
      });
      if (outcome.kind === 'minted') return outcome.minted;
      app.log.warn('token reuse detected; family revoked', {
        token_id: outcome.current.id,
        family_id: outcome.current.familyId,
        revoked: outcome.revoked,
        peer: opts.peer,
      });
      throw new RotorError('reuse_detected', 'token was already rotated: reuse detected, every token of its family is now revoked', {
        familyId: outcome.current.familyId,
      });
    } catch (e) {
      if (e instanceof LostRace && attempt < MAX_ATTEMPTS) continue;
      if (e instanceof LostRace) throw new RotorError('unavailable', 'rotation kept losing to concurrent rotations; retry');
      throw e;
    }
  }
}

async function commitRotation(
  tx: Repositories,
  current: TokenRecord,
  successor: TokenRecord,
  keyDigest: string | undefined,
  now: number,
  who: { actor: string; peer: string | null },
): Promise<void> {
  // Compare-and-set first: a loser stops here (its row lock waits for the winner) instead of
  // inserting a successor whose deterministic secret (same idempotency key) collides on the
  // unique secret digest, which surfaced as INTERNAL on PostgreSQL.
  if (!(await tx.tokens.markRotated(current.id, successor.id, keyDigest ?? null, now))) throw new LostRace();
  await tx.tokens.insert(successor);
  await tx.events.append([
    eventOf(who, { type: 'rotated', tokenId: current.id, familyId: current.familyId, successorId: successor.id, reason: 'rotated', occurredAt: now }),
    eventOf(who, { type: 'created', tokenId: successor.id, familyId: successor.familyId, successorId: null, reason: 'rotated', occurredAt: now }),
  ]);
}

/**
 * DESIGN.md rule 3, idempotent retry: re-derive the successor secret from (seed, key) and check
 * it against the stored digest, so the same successor is returned without storing plaintext.
 */
function replay(app: AppContext, current: TokenRecord, successor: TokenRecord, seed: string, key: string): MintedToken {
  const secret = formatSecret(current.kind, app.keys.successorBytes(seed, key));
  if (!digestsEqual(app.keys.secretDigest(secret), successor.secretDigest)) {
    throw new RotorError('already_rotated', `token was already rotated; its successor is ${successor.id}`, {
      successorId: successor.id,
    });
  }
  return { record: successor, secret };
}

/** RFC 8693 `audience`/`resource` narrow, never widen (DESIGN.md, Token exchange). */
function narrowAudiences(current: TokenRecord, requested: readonly string[]): string[] {
  if (requested.length === 0) return [...current.audiences];
  const extra = requested.filter((a) => !current.audiences.includes(a));
  if (extra.length > 0) throw new RotorError('invalid_target', `audience not allowed for this token: ${extra.join(' ')}`);
  return [...requested];
}

/** RotateToken: by id (admin or owner), or the caller's own bearer token when the id is empty. */
export async function rotateToken(
  app: AppContext,
  meta: CallMeta,
  req: { id: string; idempotencyKey: string; scopes: readonly string[]; expiresAt: number | undefined },
): Promise<MintedToken> {
  const opts: RotationOptions = {
    idempotencyKey: req.idempotencyKey === '' ? undefined : req.idempotencyKey,
    scopes: req.scopes,
    audiences: [],
    expiresAt: req.expiresAt,
    peer: meta.peer,
  };
  if (req.id !== '') return rotate(app, { mode: 'by_id', id: req.id, caller: await authenticate(app, meta) }, opts);
  const secret = bearerToken(meta.authorization);
  if (secret === undefined) throw new RotorError('unauthenticated', 'missing bearer token', { noCredentials: true });
  try {
    return await rotate(app, { mode: 'presented', secret }, opts);
  } catch (e) {
    // The presented token is the caller's credential here: credential failures are unauthenticated.
    if (isRotorError(e) && (e.code === 'invalid_token' || e.code === 'token_expired' || e.code === 'token_revoked')) {
      throw new RotorError('unauthenticated', `bearer ${e.message}`);
    }
    throw e;
  }
}

/** RFC 8693 §2.2.1 response fields, before transport encoding. */
export interface ExchangeResult {
  accessToken: string;
  issuedTokenType: string;
  tokenType: 'Bearer';
  expiresIn: number;
  scope: string;
  tokenId: string;
}

/**
 * RFC 8693 token exchange. A Rotor access token as subject rotates that token. Federation of
 * external JWTs and JWT access tokens are not built yet and are refused with a clear error.
 */
export async function exchangeToken(app: AppContext, params: ExchangeParams, peer: string | null): Promise<ExchangeResult> {
  const req = validateExchange(params);
  if (req.subjectTokenType === TOKEN_TYPE_JWT) {
    throw new RotorError('unsupported_token_type', 'subject_token_type jwt (workload federation) is not configured on this server');
  }
  if (req.subjectTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError('unsupported_token_type', `subject_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }
  if (req.requestedTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError('unsupported_token_type', `requested_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }
  if (req.actorToken !== undefined) {
    throw new RotorError('invalid_argument', 'actor_token is not accepted: this token has no workload binding', { field: 'actor_token' });
  }
  const minted = await rotate(
    app,
    { mode: 'presented', secret: req.subjectToken },
    {
      idempotencyKey: req.idempotencyKey,
      scopes: req.scopes,
      audiences: [...req.audience, ...req.resource.filter((r) => !req.audience.includes(r))],
      expiresAt: undefined,
      peer,
    },
  );
  return {
    accessToken: minted.secret,
    issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
    tokenType: 'Bearer',
    expiresIn: Math.max(0, Math.floor((minted.record.expiresAt - app.now()) / 1000)),
    scope: minted.record.scopes.join(' '),
    tokenId: minted.record.id,
  };
}
