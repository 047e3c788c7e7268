import type { ServiceImpl } from '@connectrpc/connect';
import type { AppContext } from '../app/context.js';
import { exchangeToken } from '../app/exchange-service.js';
import type { TokenExchangeService } from '../gen/rotor/v1/token_exchange_service_pb.js';
import { callMeta } from './call-meta.js';

/** `rotor.v1.TokenExchangeService`: RFC 8693 over gRPC/Connect, same rules as POST /oauth/token. */
export function tokenExchangeServiceImpl(app: AppContext): ServiceImpl<typeof TokenExchangeService> {
  return {
    async exchangeToken(req, ctx) {
      const meta = callMeta(ctx);
      const r = await exchangeToken(app, req, meta.peer, meta.dpop);
      meta.tokenId = r.subjectTokenId;
      return {
        accessToken: r.accessToken,
        issuedTokenType: r.issuedTokenType,
        tokenType: r.tokenType,
        expiresIn: BigInt(r.expiresIn),
        scope: r.scope,
        tokenId: r.tokenId,
      };
    },
  };
}
