import { RotorError } from '../domain/errors.js';
import { decideFederation } from '../domain/federation.js';
import { LIMITS } from '../domain/input-limits.js';
import { mintToken, type MintedToken } from '../domain/new-token.js';
import { resolvePolicy } from '../domain/policy.js';
import { requestedAudiences, type ExchangeRequest } from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import { insertCreated } from './token-service.js';

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
  const act = { iss: workload.iss, sub: workload.sub };
  await app.store.transaction((tx) => insertCreated(tx, minted, { actor: FEDERATION_ACTOR, peer, act }, now));
  app.log.info('workload federated', {
    token_id: minted.record.id,
    service_account: grant.rule.serviceAccount,
    iss: act.iss,
    sub: printable(act.sub),
  });
  return minted;
}

/** A claim value fit for a description or a log line: printable ASCII only, bounded. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 256);
}
