import { checkCreation, isAdmin, requireView } from '../domain/authorization.js';
import { RotorError } from '../domain/errors.js';
import { LIMITS, requireAudiences, requireId, requireIdentifier, requireText } from '../domain/input-limits.js';
import { mintToken, type MintedToken } from '../domain/new-token.js';
import { checkExpiry, resolvePolicy, type PolicyRequest } from '../domain/policy.js';
import { normalizeScopes } from '../domain/scopes.js';
import type { TokenRecord } from '../domain/token.js';
import type { NewTokenEvent } from '../domain/token-event.js';
import type { TokenKind } from '../domain/token-kind.js';
import type { WorkloadActor } from '../domain/workload-binding.js';
import { requireSatisfiableBinding } from './workload-proof.js';
import type { Caller } from './authenticate.js';
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

/** Who did something and from where, as the event log records it. */
export interface Who {
  actor: string;
  peer: string | null;
  /** The verified workload behind the call (rule 4 actor, or a federated subject). */
  act?: WorkloadActor;
}

/** The event a use case appends, with the caller's identity filled in. */
export function eventOf(who: Who, e: Omit<NewTokenEvent, 'actor' | 'peer'>): NewTokenEvent {
  return { ...e, actor: who.actor, peer: who.peer, act: who.act ?? null };
}

/** The audit identity of an authenticated caller. */
export function whoIs(caller: Caller): Who {
  return { actor: caller.token.id, peer: caller.peer };
}

/** Validates a CreateToken request and mints the token (not stored yet). */
function mintFor(app: AppContext, caller: Caller | 'bootstrap', input: CreateTokenInput, now: number): MintedToken {
  const ownerId = requireIdentifier('owner_id', input.ownerId, LIMITS.ownerId);
  const name = requireText('name', input.name, LIMITS.name, true);
  const description = requireText('description', input.description, LIMITS.description);
  const scopes = normalizeScopes(input.scopes);
  const audiences = requireAudiences('audiences', input.audiences);
  const policy = resolvePolicy(input.policy, app.limits);
  requireSatisfiableBinding(app, policy.workloadBinding);
  if (input.expiresAt === undefined) {
    throw new RotorError('invalid_argument', 'expires_at is required', { field: 'expires_at' });
  }
  const expiresAt = checkExpiry(input.expiresAt, now, policy, app.limits);
  if (caller !== 'bootstrap') checkCreation(caller.token, { ownerId, scopes, audiences, expiresAt, policy });
  return mintToken(
    { kind: input.kind, ownerId, name, description, scopes, audiences, policy, expiresAt },
    now,
    app.random,
    app.keys,
    caller === 'bootstrap' ? null : caller.token.id,
  );
}

/** Stores a minted first token of a family and its `created` event. */
export async function insertCreated(tx: Repositories, minted: MintedToken, who: Who, now: number): Promise<void> {
  await tx.tokens.insert(minted.record);
  await tx.events.append([
    eventOf(who, {
      type: 'created',
      tokenId: minted.record.id,
      familyId: minted.record.familyId,
      successorId: null,
      reason: null,
      occurredAt: now,
    }),
  ]);
}

/**
 * Creates the first token of a new family. Non-admins create tokens only for their own owner id
 * and never looser than themselves (src/domain/authorization.ts).
 */
export async function createToken(app: AppContext, caller: Caller, input: CreateTokenInput): Promise<MintedToken> {
  const now = app.now();
  const minted = mintFor(app, caller, input, now);
  await app.brakes?.take('mints', minted.record.ownerId);
  await app.store.transaction((tx) => insertCreated(tx, minted, whoIs(caller), now));
  return minted;
}

/** Validates and mints a token for `rotor bootstrap` (see bootstrap.ts). */
export function mintBootstrap(app: AppContext, input: CreateTokenInput, now: number): MintedToken {
  return mintFor(app, 'bootstrap', input, now);
}

/** Loads a token the caller may see; unknown ids are `not_found`. */
export async function getToken(app: AppContext, caller: Caller, id: string): Promise<TokenRecord> {
  const token = await app.store.tokens.findById(requireId('id', id));
  if (!token) throw new RotorError('not_found', `token ${id} not found`);
  requireView(caller.token, token);
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
    throw new RotorError('invalid_argument', `page_size must be between 0 and ${LIMITS.pageSize}`, {
      field: 'page_size',
    });
  }
  const limit = pageSize === 0 ? 50 : pageSize;
  const effective: TokenFilter = { ...filter };
  if (filter.ownerId !== undefined) requireIdentifier('owner_id', filter.ownerId, LIMITS.ownerId);
  if (filter.familyId !== undefined) requireId('family_id', filter.familyId);
  if (!isAdmin(caller.token)) {
    if (filter.ownerId !== undefined) requireView(caller.token, { ownerId: filter.ownerId });
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
  const m =
    token.length <= 128
      ? /^(\d{1,16}):([a-z]{3}_[0-9A-Za-z]{1,60})$/.exec(Buffer.from(token, 'base64url').toString())
      : null;
  if (!m) throw new RotorError('invalid_argument', 'page_token is not valid', { field: 'page_token' });
  return { createdAt: Number(m[1]), id: m[2]! };
}
