import { RotorError } from './errors.js';
import { LIMITS, requireAudiences, requireIdempotencyKey, requireResources } from './input-limits.js';
import { parseScopeParameter } from './scopes.js';

/** RFC 8693 §2.1 grant type. */
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 8693 §3 token type identifiers. */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const KNOWN_TOKEN_TYPES = [
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  'urn:ietf:params:oauth:token-type:refresh_token',
  'urn:ietf:params:oauth:token-type:id_token',
  'urn:ietf:params:oauth:token-type:saml1',
  'urn:ietf:params:oauth:token-type:saml2',
] as const;

/** The RFC 8693 request as received, from a form body or a protobuf message. */
export interface ExchangeParams {
  grantType: string;
  subjectToken: string;
  subjectTokenType: string;
  actorToken: string;
  actorTokenType: string;
  requestedTokenType: string;
  scope: string;
  audience: readonly string[];
  resource: readonly string[];
  idempotencyKey: string;
}

/** A validated exchange request. */
export interface ExchangeRequest {
  subjectToken: string;
  subjectTokenType: string;
  actorToken: string | undefined;
  actorTokenType: string | undefined;
  requestedTokenType: string;
  scopes: string[];
  audience: string[];
  resource: string[];
  idempotencyKey: string | undefined;
}

/** RFC 8693 `audience` and `resource` together, in order, without repeats: the audiences asked for. */
export function requestedAudiences(req: Pick<ExchangeRequest, 'audience' | 'resource'>): string[] {
  return [...req.audience, ...req.resource.filter((r) => !req.audience.includes(r))];
}

function tokenParameter(field: string, value: string): void {
  if (value.length > LIMITS.tokenParameter) {
    throw new RotorError('invalid_argument', `${field} is too long`, { field });
  }
}

/**
 * RFC 8693 §2.1 `actor_token` ('' when absent): bounded in size, and `actor_token_type` present
 * exactly when it is. Shared by the exchange and RotateToken (rule 4's proof).
 */
export function checkActorParams(actorToken: string, actorTokenType: string): void {
  tokenParameter('actor_token', actorToken);
  if (actorToken !== '' && actorTokenType === '') {
    throw new RotorError('invalid_argument', 'actor_token_type is required when actor_token is present', {
      field: 'actor_token_type',
    });
  }
  if (actorToken === '' && actorTokenType !== '') {
    throw new RotorError('invalid_argument', 'actor_token_type must not be sent without actor_token', {
      field: 'actor_token_type',
    });
  }
}

/**
 * Validates the parameters of RFC 8693 §2.1 once for both transports: grant type, required
 * subject token and type, `actor_token_type` present exactly when `actor_token` is, known token
 * types, and the size of every field.
 */
export function validateExchange(p: ExchangeParams): ExchangeRequest {
  if (p.grantType !== GRANT_TOKEN_EXCHANGE) {
    if (p.grantType === '') throw new RotorError('invalid_argument', 'grant_type is required', { field: 'grant_type' });
    throw new RotorError('unsupported_grant_type', `grant_type must be ${GRANT_TOKEN_EXCHANGE}`, {
      field: 'grant_type',
    });
  }
  if (p.subjectToken === '')
    throw new RotorError('invalid_argument', 'subject_token is required', { field: 'subject_token' });
  if (p.subjectTokenType === '') {
    throw new RotorError('invalid_argument', 'subject_token_type is required', { field: 'subject_token_type' });
  }
  tokenParameter('subject_token', p.subjectToken);
  checkActorParams(p.actorToken, p.actorTokenType);
  for (const [field, value] of [
    ['subject_token_type', p.subjectTokenType],
    ['actor_token_type', p.actorTokenType],
    ['requested_token_type', p.requestedTokenType],
  ] as const) {
    if (value !== '' && !(KNOWN_TOKEN_TYPES as readonly string[]).includes(value)) {
      throw new RotorError('invalid_argument', `${field} is not a known token type`, { field });
    }
  }
  const audience = requireAudiences('audience', p.audience);
  const resource = requireResources(p.resource);
  const scopes = parseScopeParameter(p.scope);
  const idempotencyKey = p.idempotencyKey === '' ? undefined : requireIdempotencyKey(p.idempotencyKey);
  return {
    subjectToken: p.subjectToken,
    subjectTokenType: p.subjectTokenType,
    actorToken: p.actorToken === '' ? undefined : p.actorToken,
    actorTokenType: p.actorTokenType === '' ? undefined : p.actorTokenType,
    requestedTokenType: p.requestedTokenType === '' ? TOKEN_TYPE_ACCESS_TOKEN : p.requestedTokenType,
    scopes,
    audience,
    resource,
    idempotencyKey,
  };
}
