import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { ExpiryService } from '../gen/rotor/v1/expiry_service_pb.js';
import { TokenService } from '../gen/rotor/v1/token_service_pb.js';
import { dpopInterceptor } from './dpop-interceptor.js';
import type { DpopKey } from './dpop-key.js';
import { explainTransportErrors } from './transport-errors.js';

/**
 * The CLI talks Connect over HTTP/1.1 to the HTTP port (`ROTOR_SERVER`), unary and streaming alike;
 * a server it cannot reach or trust is explained (src/cli/transport-errors.ts).
 */
function transport(server: string, interceptors: Interceptor[] = []): Transport {
  return createConnectTransport({
    baseUrl: server,
    httpVersion: '1.1',
    interceptors: [explainTransportErrors, ...interceptors],
  });
}

/**
 * A Connect client of TokenService on the HTTP port, sending `authorization: Bearer`; with a DPoP
 * key, every call carries a proof and a bound token goes as `DPoP` (src/cli/dpop-interceptor.ts).
 */
export function tokenClient(server: string, token: string | undefined, dpop?: DpopKey): Client<typeof TokenService> {
  const auth: Interceptor = (next) => (req) => {
    if (token) req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  return createClient(TokenService, transport(server, [auth, ...(dpop ? [dpopInterceptor(dpop)] : [])]));
}

/**
 * TokenService and ExpiryService clients without a fixed credential: callers whose token changes
 * (the agent) pass it per call with `asBearer`.
 */
export function rotorClients(
  server: string,
  dpop?: DpopKey,
): {
  tokens: Client<typeof TokenService>;
  expiry: Client<typeof ExpiryService>;
} {
  const t = transport(server, dpop ? [dpopInterceptor(dpop)] : []);
  return { tokens: createClient(TokenService, t), expiry: createClient(ExpiryService, t) };
}

/** Call options carrying `authorization: Bearer <secret>` (and an optional deadline and signal). */
export function asBearer(secret: string, extra: Omit<CallOptions, 'headers'> = {}): CallOptions {
  return { ...extra, headers: { authorization: `Bearer ${secret}` } };
}
