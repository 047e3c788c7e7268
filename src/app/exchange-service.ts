import { RotorError } from '../domain/errors.js';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, validateExchange, type ExchangeParams } from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import { issueJwtForRotorToken } from './jwt-access-tokens.js';
import { rotate } from './rotation-service.js';

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
 * RFC 8693 token exchange. A Rotor access token as subject rotates that token, or, with
 * `requested_token_type=...:jwt`, is exchanged for a JWT access token without being rotated
 * (docs/jwt-access-tokens.md). Federation of external JWTs is not built yet and is refused.
 */
export async function exchangeToken(app: AppContext, params: ExchangeParams, peer: string | null): Promise<ExchangeResult> {
  const req = validateExchange(params);
  if (req.subjectTokenType === TOKEN_TYPE_JWT) {
    throw new RotorError('unsupported_token_type', 'subject_token_type jwt (workload federation) is not configured on this server');
  }
  if (req.subjectTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError('unsupported_token_type', `subject_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }
  if (req.requestedTokenType === TOKEN_TYPE_JWT) {
    const audiences = [...req.audience, ...req.resource.filter((r) => !req.audience.includes(r))];
    const { jwt, claims } = await issueJwtForRotorToken(app, { subjectToken: req.subjectToken, scopes: req.scopes, audiences, actorToken: req.actorToken }, peer);
    return {
      accessToken: jwt,
      issuedTokenType: TOKEN_TYPE_JWT,
      tokenType: 'Bearer',
      expiresIn: claims.exp - claims.iat,
      scope: claims.scope ?? '',
      tokenId: claims.jti,
    };
  }
  if (req.requestedTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError('unsupported_token_type', `requested_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN} or ${TOKEN_TYPE_JWT}`);
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
      actorTokenPresented: req.actorToken !== undefined,
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

/**
 * The token types the exchange accepts as `subject_token_type` and issues as
 * `requested_token_type`, published in the RFC 8414 metadata (docs/jwt-access-tokens.md).
 */
export function exchangeTokenTypes(): { subject: string[]; requested: string[] } {
  return { subject: [TOKEN_TYPE_ACCESS_TOKEN], requested: [TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT] };
}
