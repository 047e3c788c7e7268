import { RotorError } from '../domain/errors.js';
import { LIMITS, requireAudiences, requireId, requireIdentifier, requireText } from '../domain/input-limits.js';
import { mintToken, type MintedToken } from '../domain/new-token.js';
import { checkExpiry, resolvePolicy, type PolicyRequest } from '../domain/policy.js';
import { SCOPE_ADMIN, SCOPE_INTROSPECT, hasScope, narrowScopes, normalizeScopes } from '../domain/scopes.js';
import { isUsable, type TokenRecord } from '../domain/token.js';
import type { NewTokenEvent } from '../domain/token-event.js';
import { digestsEqual } from '../domain/token-keys.js';
import type { TokenKind } from '../domain/token-kind.js';
import { isRotorError } from '../domain/errors.js';
import { findBySecret, requireManage, successorForUse, type Caller } from './authenticate.js';
import type { AppContext } from './context.js';
import type { PageCursor, Repositories, TokenFilter } from './store-ports.js';

/** CreateToken input, already decoded from the wire. */
export interface CreateTokenInput {
  kind: TokenKind;
  ownerId: string;
  name: string;
  description: string;
  scopes: readonly string[];
  audiences: readonly string[];
  expiresAt: number | undefined;
  policy: PolicyRequest;
}

/** The event a use case appends, with the caller's identity filled in. */
export function eventOf(caller: { actor: string; peer: string | null }, e: Omit<NewTokenEvent, 'actor' | 'peer'>): NewTokenEvent {
  return { ...e, actor: caller.actor, peer: caller.peer };
}

function actorOf(caller: Caller): { actor: string; peer: string | null } {
  return { actor: caller.token.id, peer: caller.peer };
}

/**
 * Creates the first token of a new family. Non-admins create tokens only for their own owner id
 * and only with scopes they hold themselves.
 */
export async function createToken(app: AppContext, caller: Caller | 'bootstrap', input: CreateTokenInput): Promise<MintedToken> {
  const now = app.now();
  const ownerId = requireIdentifier('owner_id', input.ownerId, LIMITS.ownerId);
  const name = requireText('name', input.name, LIMITS.name, true);
  const description = requireText('description', input.description, LIMITS.description);
  let scopes = normalizeScopes(input.scopes);
  const audiences = requireAudiences('audiences', input.audiences);
  const policy = resolvePolicy(input.policy, app.limits);
  if (input.expiresAt === undefined) {
    throw new RotorError('invalid_argument', 'expires_at is required', { field: 'expires_at' });
  }
  const expiresAt = checkExpiry(input.expiresAt, now, policy, app.limits);
  if (caller !== 'bootstrap' && !hasScope(caller.token.scopes, SCOPE_ADMIN)) {
    requireManage(caller, { ownerId });
    scopes = narrowScopes(caller.token.scopes, scopes);
  }
  const minted = mintToken({ kind: input.kind, ownerId, name, description, scopes, audiences, policy, expiresAt }, now, app.random, app.keys);
  const who = caller === 'bootstrap' ? { actor: 'bootstrap', peer: null } : actorOf(caller);
  await app.store.transaction(async (tx) => {
    await tx.tokens.insert(minted.record);
    await tx.events.append([
      eventOf(who, { type: 'created', tokenId: minted.record.id, familyId: minted.record.familyId, successorId: null, reason: null, occurredAt: now }),
    ]);
  });
  return minted;
}

/** Loads a token the caller may manage; unknown ids are `not_found`. */
export async function getToken(app: AppContext, caller: Caller, id: string): Promise<TokenRecord> {
  const token = await app.store.tokens.findById(requireId('id', id));
  if (!token) throw new RotorError('not_found', `token ${id} not found`);
  requireManage(caller, token);
  return token;
}

/** ListTokens: non-admins see their own owner id only. */
export async function listTokens(
  app: AppContext,
  caller: Caller,
  filter: TokenFilter,
  pageSize: number,
  pageToken: string,
): Promise<{ tokens: TokenRecord[]; nextPageToken: string }> {
  if (!Number.isSafeInteger(pageSize) || pageSize < 0 || pageSize > LIMITS.pageSize) {
    throw new RotorError('invalid_argument', `page_size must be between 0 and ${LIMITS.pageSize}`, { field: 'page_size' });
  }
  const limit = pageSize === 0 ? 50 : pageSize;
  const effective: TokenFilter = { ...filter };
  if (filter.ownerId !== undefined) requireIdentifier('owner_id', filter.ownerId, LIMITS.ownerId);
  if (filter.familyId !== undefined) requireId('family_id', filter.familyId);
  if (!hasScope(caller.token.scopes, SCOPE_ADMIN)) {
    if (filter.ownerId !== undefined) requireManage(caller, { ownerId: filter.ownerId });
    effective.ownerId = caller.token.ownerId;
  }
  const after = pageToken === '' ? undefined : decodeCursor(pageToken);
  const rows = await app.store.tokens.list(effective, app.now(), limit + 1, after);
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    tokens: page,
    nextPageToken: rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : '',
  };
}

function encodeCursor(c: PageCursor): string {
  return Buffer.from(`${c.createdAt}:${c.id}`).toString('base64url');
}

function decodeCursor(token: string): PageCursor {
  const m = token.length <= 128 ? /^(\d{1,16}):([a-z]{3}_[0-9A-Za-z]{1,60})$/.exec(Buffer.from(token, 'base64url').toString()) : null;
  if (!m) throw new RotorError('invalid_argument', 'page_token is not valid', { field: 'page_token' });
  return { createdAt: Number(m[1]), id: m[2]! };
}

/** Revokes one token by id (a rotated token inside its overlap window too). Idempotent. */
export async function revokeToken(app: AppContext, caller: Caller, id: string): Promise<TokenRecord> {
  const token = await getToken(app, caller, id);
  return revokeRecord(app, actorOf(caller), token);
}

async function revokeRecord(app: AppContext, who: { actor: string; peer: string | null }, token: TokenRecord): Promise<TokenRecord> {
  const now = app.now();
  return app.store.transaction(async (tx) => {
    if (await tx.tokens.revoke(token.id, 'revoked', now)) {
      await tx.events.append([
        eventOf(who, { type: 'revoked', tokenId: token.id, familyId: token.familyId, successorId: null, reason: 'revoked', occurredAt: now }),
      ]);
    }
    return (await tx.tokens.findById(token.id)) ?? token;
  });
}

/**
 * RFC 7009 §2: the holder revokes a token by presenting it. Possession is the authority; unknown
 * or malformed tokens are answered the same way as known ones (§2.2), so nothing leaks.
 */
export async function revokeBySecret(app: AppContext, secret: string, peer: string | null): Promise<void> {
  let token: TokenRecord | undefined;
  try {
    token = await findBySecret(app, secret);
  } catch (e) {
    if (isRotorError(e) && e.code === 'invalid_token') return;
    throw e;
  }
  if (token) await revokeRecord(app, { actor: token.id, peer }, token);
}

/** Revokes every member of a family (manual breach response). */
export async function revokeFamily(app: AppContext, caller: Caller, familyId: string): Promise<number> {
  const member = await app.store.tokens.findFamilyMember(requireId('family_id', familyId));
  if (!member) throw new RotorError('not_found', `family ${familyId} not found`);
  requireManage(caller, member);
  const now = app.now();
  return app.store.transaction((tx) => revokeFamilyIn(tx, actorOf(caller), familyId, 'family_revoked', now));
}

/**
 * Revokes every live member of a family inside the caller's transaction and logs one
 * `family_revoked` event per member (so a watcher of any member learns of it).
 */
export async function revokeFamilyIn(
  tx: Repositories,
  who: { actor: string; peer: string | null },
  familyId: string,
  reason: 'family_revoked' | 'reuse_detected',
  now: number,
): Promise<number> {
  const ids = await tx.tokens.revokeFamily(familyId, reason, now);
  await tx.events.append(ids.map((tokenId) => eventOf(who, { type: 'family_revoked', tokenId, familyId, successorId: null, reason, occurredAt: now })));
  return ids.length;
}

/** RFC 7662 §2.2 introspection result, before transport encoding. */
export type Introspection = { active: false } | { active: true; token: TokenRecord };

/**
 * RFC 7662 introspection. Callers holding `rotor:introspect` or `rotor:admin` may introspect any
 * token; others only their own. Anything not usable is `{active: false}` (§2.2).
 */
export async function introspect(app: AppContext, caller: Caller, secret: string): Promise<Introspection> {
  if (secret.length > LIMITS.tokenParameter) throw new RotorError('invalid_argument', 'token is too long', { field: 'token' });
  const privileged = hasScope(caller.token.scopes, SCOPE_INTROSPECT) || hasScope(caller.token.scopes, SCOPE_ADMIN);
  let token: TokenRecord | undefined;
  try {
    token = await findBySecret(app, secret);
  } catch (e) {
    if (isRotorError(e) && e.code === 'invalid_token') {
      if (!privileged) throw new RotorError('permission_denied', `introspecting another token needs the ${SCOPE_INTROSPECT} scope`);
      return { active: false };
    }
    throw e;
  }
  if (!privileged && !(token && digestsEqual(token.secretDigest, caller.token.secretDigest))) {
    throw new RotorError('permission_denied', `introspecting another token needs the ${SCOPE_INTROSPECT} scope`);
  }
  if (!token || !isUsable(token, app.now(), await successorForUse(app, token))) return { active: false };
  return { active: true, token };
}
