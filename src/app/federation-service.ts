import { createHash } from 'node:crypto';
import { RotorError } from '../domain/errors.js';
import { decideFederation, type FederationRule } from '../domain/federation.js';
import { LIMITS } from '../domain/input-limits.js';
import { mintToken, type MintedToken } from '../domain/new-token.js';
import { resolvePolicy } from '../domain/policy.js';
import { requestedAudiences, type ExchangeRequest } from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import type { Repositories } from './store-ports.js';
import { eventOf, insertCreated, type Who } from './token-service.js';

/** Actor recorded in the event log for tokens issued by federation. */
const FEDERATION_ACTOR = 'federation';

/**
 * Whether this server federates workload JWTs: only when ROTOR_TRUST_CONFIG has federation rules.
 * The one place of that rule: `federate` refuses otherwise, and the RFC 8414 metadata
 * (`exchangeTokenTypes`) advertises a JWT subject only then.
 */
export function federationConfigured(
  app: AppContext,
): app is AppContext & { identity: NonNullable<AppContext['identity']> } {
  return app.identity !== undefined && app.identity.federation.length > 0;
}

/**
 * Workload federation (docs/design.md, "Token exchange, federation and JWT access tokens"): a
 * JWT from a trusted issuer that matches a federation rule yields a fresh short-lived
 * `service_account` token owned by the rule's service account. The JWT is verified (and its
 * `jti` spent) before the domain decides; the event log records the workload's `iss`/`sub` as
 * `act`, never the JWT.
 */
export async function federate(app: AppContext, req: ExchangeRequest, peer: string | null): Promise<MintedToken> {
  if (!federationConfigured(app)) {
    throw new RotorError(
      'unsupported_token_type',
      'subject_token_type jwt (workload federation) is not configured on this server',
    );
  }
  if (req.actorToken !== undefined) {
    throw new RotorError('invalid_argument', 'actor_token is not accepted with a jwt subject_token', {
      field: 'actor_token',
    });
  }
  if (req.idempotencyKey !== undefined) {
    throw new RotorError(
      'invalid_argument',
      'idempotency_key applies to rotation only; a federation JWT is used once',
      { field: 'idempotency_key' },
    );
  }
  const workload = await app.identity.verify(req.subjectToken, 'subject_token');
  const now = app.now();
  const audiences = requestedAudiences(req);
  const grant = decideFederation(
    app.identity.federation,
    workload,
    { scopes: req.scopes, audiences },
    now,
    app.limits.maxLifetimeSeconds,
  );
  const minted = mintToken(
    {
      kind: 'service_account',
      ownerId: grant.rule.serviceAccount,
      name: 'federated',
      description: `federated from ${workload.iss} for ${printable(workload.sub)}`.slice(0, LIMITS.description),
      scopes: grant.scopes,
      audiences: grant.audiences,
      policy: resolvePolicy({ maxLifetimeSeconds: grant.rule.maxLifetimeSeconds }, app.limits),
      expiresAt: grant.expiresAt,
    },
    now,
    app.random,
    app.keys,
  );
  await app.brakes?.take('mints', minted.record.ownerId);
  const act = { iss: workload.iss, sub: workload.sub };
  const who: Who = { actor: FEDERATION_ACTOR, peer, act };
  const cap = grant.rule.maxActiveTokens ?? 0;
  let superseded: string[] = [];
  if (cap === 0) {
    await app.store.transaction((tx) => insertCreated(tx, minted, who, now));
  } else {
    const key = workloadKey(grant.rule, workload.sub);
    // The workload's lock: two federations of one workload never both see room under the cap.
    superseded = await app.store.transaction((tx) => insertCapped(tx, minted, who, key, cap, now), {
      lock: `federation:${key}`,
    });
  }
  app.log.info('workload federated', {
    token_id: minted.record.id,
    service_account: grant.rule.serviceAccount,
    iss: act.iss,
    sub: printable(act.sub),
    ...(superseded.length > 0 && { superseded }),
  });
  return minted;
}

/**
 * The workload a federation rule's `max_active_tokens` counts per: the rule (its issuer, subject
 * pattern and service account) and the JWT's `sub`, as a SHA-256 (fixed length, whatever `sub` holds).
 */
function workloadKey(rule: FederationRule, sub: string): string {
  return createHash('sha256')
    .update(JSON.stringify([rule.issuer, rule.subject, rule.serviceAccount, sub]))
    .digest('hex');
}

/**
 * Inserts a federated token under its rule's cap (docs/limits.md): the workload's oldest live
 * tokens are revoked (reason `superseded`, one `superseded` event each) until, with the new one,
 * it holds `cap`. Returns the ids it revoked.
 */
async function insertCapped(
  tx: Repositories,
  minted: MintedToken,
  who: Who,
  key: string,
  cap: number,
  now: number,
): Promise<string[]> {
  const live = await tx.tokens.liveOfWorkload(key, now);
  const superseded: { id: string; familyId: string }[] = [];
  for (const t of live.slice(0, Math.max(0, live.length - (cap - 1)))) {
    if (await tx.tokens.revoke(t.id, 'superseded', now)) superseded.push(t);
  }
  await tx.tokens.insert(minted.record);
  await tx.tokens.recordWorkload(minted.record.id, key, now);
  const record = minted.record;
  await tx.events.append([
    ...superseded.map((t) =>
      eventOf(who, {
        type: 'superseded',
        tokenId: t.id,
        familyId: t.familyId,
        successorId: record.id,
        reason: 'superseded',
        occurredAt: now,
      }),
    ),
    eventOf(who, {
      type: 'created',
      tokenId: record.id,
      familyId: record.familyId,
      successorId: null,
      reason: null,
      occurredAt: now,
    }),
  ]);
  return superseded.map((t) => t.id);
}

/** A claim value fit for a description or a log line: printable ASCII only, bounded. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 256);
}
