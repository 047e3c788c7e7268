import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { TokenService } from '../gen/rotor/v1/token_service_pb.js';

/** A Connect client of TokenService on the HTTP port, sending `authorization: Bearer`. */
export function tokenClient(server: string, token: string | undefined): Client<typeof TokenService> {
  const auth: Interceptor = (next) => (req) => {
    if (token) req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  return createClient(TokenService, createConnectTransport({ baseUrl: server, httpVersion: '1.1', interceptors: [auth] }));
}
