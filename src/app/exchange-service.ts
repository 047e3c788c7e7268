import { RotorError } from '../domain/errors.js';
import { TOKEN_TYPE_ACCESS_TOKEN, validateExchange, type ExchangeParams } from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import { exchangeSubject } from './exchange-subject.js';

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
 * RFC 8693 token exchange: the subject yields a token (src/app/exchange-subject.ts: rotation or
 * federation), then it is returned in the requested format (an opaque Rotor access token).
 */
export async function exchangeToken(app: AppContext, params: ExchangeParams, peer: string | null): Promise<ExchangeResult> {
  const req = validateExchange(params);
  if (req.requestedTokenType !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new RotorError('unsupported_token_type', `requested_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`);
  }
  const minted = await exchangeSubject(app, req, peer);
  return {
    accessToken: minted.secret,
    issuedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
    tokenType: 'Bearer',
    expiresIn: Math.max(0, Math.floor((minted.record.expiresAt - app.now()) / 1000)),
    scope: minted.record.scopes.join(' '),
    tokenId: minted.record.id,
  };
}
