import { type Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import type * as grpc from '@grpc/grpc-js';
import { ExpiryService } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { grpcClient } from './grpc-client.js';
import { RpcFailure, type Wire } from './rotor-api.js';
import type { TestServer } from './server.js';

/** Headers of one call: the credential as the test wants it sent, and a DPoP proof. */
export interface CallHeaders {
  authorization?: string;
  dpop?: string;
}

type Rpc = 'RotateToken' | 'IntrospectToken' | 'GetToken' | 'ExchangeToken' | 'WatchExpiry';

/**
 * TokenService and TokenExchangeService over grpc-js (gRPC port) or the Connect client (HTTP port)
 * with raw `authorization` and `dpop` headers, and the URL a proof for each method must name.
 */
export interface DpopClient {
  wire: Wire;
  /** `http://<authority>/rotor.v1.<Service>/<Method>`, the htu of a proof for that call. */
  url(rpc: Rpc): string;
  call(rpc: Rpc, req: Record<string, unknown>, headers: CallHeaders): Promise<Record<string, unknown>>;
  /** Opens WatchExpiry with a snapshot; the first event, or the stream's failure. The stream is then cancelled. */
  firstEvent(headers: CallHeaders): Promise<Record<string, unknown>>;
  close(): void;
}

const SERVICE: Record<Rpc, string> = {
  RotateToken: 'rotor.v1.TokenService',
  IntrospectToken: 'rotor.v1.TokenService',
  GetToken: 'rotor.v1.TokenService',
  ExchangeToken: 'rotor.v1.TokenExchangeService',
  WatchExpiry: 'rotor.v1.ExpiryService',
};

const defined = (headers: CallHeaders) =>
  Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined)) as Record<string, string>;

const local = (rpc: Rpc) => (rpc.charAt(0).toLowerCase() + rpc.slice(1)) as 'rotateToken';

/** A DpopClient for one wire of a server (or replica). */
export function dpopClient(wire: Wire, s: Pick<TestServer, 'grpcAddress' | 'httpUrl'>): DpopClient {
  const base = wire === 'grpc' ? `http://${s.grpcAddress}` : s.httpUrl;
  const url = (rpc: Rpc) => `${base}/${SERVICE[rpc]}/${rpc}`;
  if (wire === 'grpc') {
    const tokens = grpcClient(TokenService, s.grpcAddress);
    const exchange = grpcClient(TokenExchangeService, s.grpcAddress);
    const expiry = grpcClient(ExpiryService, s.grpcAddress);
    return {
      wire,
      url,
      firstEvent(headers) {
        const call = (
          expiry as unknown as {
            stream(
              m: string,
              r: unknown,
              o: { metadata: Record<string, string> },
            ): grpc.ClientReadableStream<Record<string, unknown>>;
          }
        ).stream('watchExpiry', { includeSnapshot: true }, { metadata: defined(headers) });
        return new Promise((resolve, reject) => {
          call.once('data', (e: Record<string, unknown>) => {
            call.removeAllListeners('error');
            call.on('error', () => {});
            call.cancel();
            resolve(e);
          });
          call.once('error', (err: grpc.ServiceError) => {
            const md: Record<string, string> = {};
            for (const [k, v] of Object.entries(err.metadata?.getMap() ?? {})) if (typeof v === 'string') md[k] = v;
            reject(new RpcFailure(err.code as number as Code, err.details, md));
          });
        });
      },
      async call(rpc, req, headers) {
        const metadata = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined)) as Record<
          string,
          string
        >;
        try {
          const c = (rpc === 'ExchangeToken' ? exchange : tokens) as unknown as {
            call(m: string, r: unknown, o: { metadata: Record<string, string> }): Promise<Record<string, unknown>>;
          };
          return await c.call(local(rpc), req, { metadata });
        } catch (e) {
          const err = e as grpc.ServiceError;
          if (typeof err.code !== 'number' || err.metadata === undefined) throw e;
          const md: Record<string, string> = {};
          for (const [k, v] of Object.entries(err.metadata.getMap())) if (typeof v === 'string') md[k] = v;
          throw new RpcFailure(err.code as number as Code, err.details, md);
        }
      },
      close() {
        tokens.close();
        exchange.close();
        expiry.close();
      },
    };
  }
  const transport = createConnectTransport({ baseUrl: s.httpUrl, httpVersion: '1.1' });
  const tokens = createClient(TokenService, transport);
  const exchange = createClient(TokenExchangeService, transport);
  const expiry = createClient(ExpiryService, transport);
  return {
    wire,
    url,
    async firstEvent(headers) {
      const abort = new AbortController();
      try {
        for await (const e of expiry.watchExpiry(
          { includeSnapshot: true },
          { headers: defined(headers), signal: abort.signal },
        ))
          return e as unknown as Record<string, unknown>;
        throw new Error('WatchExpiry ended without an event');
      } catch (e) {
        if (!(e instanceof ConnectError)) throw e;
        const md: Record<string, string> = {};
        e.metadata.forEach((v, k) => {
          md[k] = v;
        });
        throw new RpcFailure(e.code, e.rawMessage, md);
      } finally {
        abort.abort();
      }
    },
    async call(rpc, req, headers) {
      const h = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined)) as Record<
        string,
        string
      >;
      try {
        const c = (rpc === 'ExchangeToken' ? exchange : tokens) as unknown as Record<
          string,
          (r: unknown, o: { headers: Record<string, string> }) => Promise<Record<string, unknown>>
        >;
        return await c[local(rpc)]!(req, { headers: h });
      } catch (e) {
        if (!(e instanceof ConnectError)) throw e;
        const md: Record<string, string> = {};
        e.metadata.forEach((v, k) => {
          md[k] = v;
        });
        throw new RpcFailure(e.code, e.rawMessage, md);
      }
    },
    close() {},
  };
}
