import { RotorError } from '../domain/errors.js';
import {
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  requestedAudiences,
  validateExchange,
  type ExchangeParams,
} from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import { tokenTypeOf, type DpopRequest } from './dpop.js';
import { issueJwtForRotorToken } from './jwt-access-tokens.js';
import { exchangeSubject } from './exchange-subject.js';
import { federationConfigured } from './federation-service.js';

/** RFC 8693 §2.2.1 response fields, before transport encoding. */
export interface ExchangeResult {
  accessToken: string;
  issuedTokenType: string;
  /** `DPoP` for a token bound to a key (RFC 9449 §5), else `Bearer`. */
  tokenType: 'Bearer' | 'DPoP';
  expiresIn: number;
  scope: string;
  tokenId: string;
  /** The Rotor token presented as `subject_token` (for the access log); none for a federated workload JWT. */
  subjectTokenId: string | undefined;
}

/**
 * RFC 8693 token exchange. The subject yields a token (src/app/exchange-subject.ts: rotation of a
 * Rotor access token, or federation of a workload JWT), returned as an opaque Rotor access token.
 * With `requested_token_type=...:jwt` a Rotor access token is exchanged for a JWT access token
 * without being rotated (docs/jwt-access-tokens.md).
 */
export async function exchangeToken(
  app: AppContext,
  params: ExchangeParams,
  peer: string | null,
  dpop?: DpopRequest,
): Promise<ExchangeResult> {
  const req = validateExchange(params);
  if (req.requestedTokenType === TOKEN_TYPE_JWT) {
    if (req.subjectTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
      throw new RotorError(
        'unsupported_token_type',
        `requested_token_type jwt needs subject_token_type ${TOKEN_TYPE_ACCESS_TOKEN}; federate first, then exchange the issued token for a JWT`,
      );
    }
    const audiences = requestedAudiences(req);
    const { jwt, claims } = await issueJwtForRotorToken(
      app,
      {
        subjectToken: req.subjectToken,
        scopes: req.scopes,
        audiences,
        actorToken: req.actorToken,
        actorTokenType: req.actorTokenType,
      },
      peer,
      dpop,
    );
    return {
      accessToken: jwt,
      issuedTokenType: TOKEN_TYPE_JWT,
      tokenType: claims.cnf === undefined ? 'Bearer' : 'DPoP',
      expiresIn: claims.exp - claims.iat,
      scope: claims.scope ?? '',
      tokenId: claims.jti,
      subjectTokenId: claims.token_id,
    };
  }
  if (req.requestedTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError(
      'unsupported_token_type',
      `requested_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN} or ${TOKEN_TYPE_JWT}`,
    );
  }
  const minted = await exchangeSubject(app, req, peer, dpop);
  return {
    accessToken: minted.secret,
    issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
    tokenType: tokenTypeOf(minted.record),
    expiresIn: Math.max(0, Math.floor((minted.record.expiresAt - app.now()) / 1000)),
    scope: minted.record.scopes.join(' '),
    tokenId: minted.record.id,
    subjectTokenId: minted.record.previousId ?? undefined,
  };
}

/**
 * The token types the exchange accepts as `subject_token_type` and issues as
 * `requested_token_type`, published in the RFC 8414 metadata (docs/jwt-access-tokens.md).
 */
export function exchangeTokenTypes(app: AppContext): { subject: string[]; requested: string[] } {
  return {
    subject: federationConfigured(app) ? [TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT] : [TOKEN_TYPE_ACCESS_TOKEN],
    requested: [TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT],
  };
}
