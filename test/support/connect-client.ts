import type { DescService } from '@bufbuild/protobuf';
import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';

/** A Connect-protocol client over HTTP/1.1, optionally with a bearer token; `binary` picks protobuf over JSON. */
export function connectClient<S extends DescService>(
  service: S,
  baseUrl: string,
  token?: string,
  opts: { binary?: boolean; grpcWeb?: boolean } = {},
): Client<S> {
  const auth: Interceptor = (next) => (req) => {
    if (token !== undefined) req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = opts.grpcWeb
    ? createGrpcWebTransport({ baseUrl, httpVersion: '1.1', interceptors: [auth] })
    : createConnectTransport({
        baseUrl,
        httpVersion: '1.1',
        useBinaryFormat: opts.binary ?? false,
        interceptors: [auth],
      });
  return createClient(service, transport);
}
