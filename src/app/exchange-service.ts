import { RotorError } from '../domain/errors.js';
import { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, validateExchange, type ExchangeParams } from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
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
