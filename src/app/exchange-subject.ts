import { RotorError } from '../domain/errors.js';
import type { MintedToken } from '../domain/new-token.js';
import {
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  requestedAudiences,
  type ExchangeRequest,
} from '../domain/token-exchange.js';
import type { AppContext } from './context.js';
import type { DpopRequest } from './dpop.js';
import { federate } from './federation-service.js';
import { rotate } from './rotation-service.js';

/**
 * The subject half of RFC 8693 token exchange: what the `subject_token` yields, before the output
 * format (`requested_token_type`) is chosen.
 * - `access_token`: a Rotor token → its rotation (docs/rotation.md rules 1-7; a bound token needs the
 *   `actor_token` of rule 4);
 * - `jwt`: a workload JWT from a trusted issuer → federation to a service account.
 */
export async function exchangeSubject(
  app: AppContext,
  req: ExchangeRequest,
  peer: string | null,
  dpop?: DpopRequest,
): Promise<MintedToken> {
  switch (req.subjectTokenType) {
    case TOKEN_TYPE_ACCESS_TOKEN:
      return rotate(
        app,
        { mode: 'presented', secret: req.subjectToken, use: 'subject', dpop },
        {
          idempotencyKey: req.idempotencyKey,
          scopes: req.scopes,
          audiences: requestedAudiences(req),
          expiresAt: undefined,
          peer,
          actorToken: req.actorToken,
          actorTokenType: req.actorTokenType,
        },
      );
    case TOKEN_TYPE_JWT:
      return federate(app, req, peer);
    default:
      throw new RotorError(
        'unsupported_token_type',
        `subject_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN} or ${TOKEN_TYPE_JWT}`,
      );
  }
}
