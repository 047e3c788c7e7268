import { randomBytes } from 'node:crypto';
import type { DescMessage, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import type * as grpc from '@grpc/grpc-js';
import {
  TokenExchangeService,
  type ExchangeTokenRequestSchema,
  type ExchangeTokenResponseSchema,
} from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import {
  TokenService,
  type CreateTokenRequestSchema,
  type CreateTokenResponseSchema,
  type GetTokenRequestSchema,
  type GetTokenResponseSchema,
  type IntrospectTokenRequestSchema,
  type IntrospectTokenResponseSchema,
  type ListTokensRequestSchema,
  type ListTokensResponseSchema,
  type RevokeFamilyRequestSchema,
  type RevokeFamilyResponseSchema,
  type RevokeTokenRequestSchema,
  type RevokeTokenResponseSchema,
  type RotateTokenRequestSchema,
  type RotateTokenResponseSchema,
} from '../../src/gen/rotor/v1/token_service_pb.js';
import { connectClient } from './connect-client.js';
import { grpcClient } from './grpc-client.js';
import { redactSecrets } from '../../src/runtime/logger.js';
import type { TestServer } from './server.js';

/**
 * One transport-neutral client of TokenService and TokenExchangeService, so a scenario runs
 * unchanged over grpc-js (gRPC port) and the Connect client (HTTP port); failures of either
 * arrive as the same RpcFailure.
 */
export type Wire = 'grpc' | 'connect';

/** A failed RPC, the same shape whichever transport carried it. */
export class RpcFailure extends Error {
  constructor(
    readonly code: Code,
    readonly rawMessage: string,
    private readonly md: Record<string, string>,
  ) {
    super(`RPC failed: ${Code[code]} ${rawMessage}`);
  }
  meta(key: string): string | undefined {
    return this.md[key];
  }
}

export type Req<S extends DescMessage> = MessageInitShape<S>;
export type Res<S extends DescMessage> = MessageShape<S>;

export interface Api {
  wire: Wire;
  createToken(req: Req<typeof CreateTokenRequestSchema>, bearer: string): Promise<Res<typeof CreateTokenResponseSchema>>;
  getToken(req: Req<typeof GetTokenRequestSchema>, bearer: string): Promise<Res<typeof GetTokenResponseSchema>>;
  listTokens(req: Req<typeof ListTokensRequestSchema>, bearer: string): Promise<Res<typeof ListTokensResponseSchema>>;
  rotateToken(req: Req<typeof RotateTokenRequestSchema>, bearer: string | undefined): Promise<Res<typeof RotateTokenResponseSchema>>;
  revokeToken(req: Req<typeof RevokeTokenRequestSchema>, bearer: string): Promise<Res<typeof RevokeTokenResponseSchema>>;
  revokeFamily(req: Req<typeof RevokeFamilyRequestSchema>, bearer: string): Promise<Res<typeof RevokeFamilyResponseSchema>>;
  introspectToken(req: Req<typeof IntrospectTokenRequestSchema>, bearer: string): Promise<Res<typeof IntrospectTokenResponseSchema>>;
  exchangeToken(req: Req<typeof ExchangeTokenRequestSchema>): Promise<Res<typeof ExchangeTokenResponseSchema>>;
  close(): void;
}

export function grpcApi(s: Pick<TestServer, 'grpcAddress'>): Api {
  const tokens = grpcClient(TokenService, s.grpcAddress);
  const exchange = grpcClient(TokenExchangeService, s.grpcAddress);
  const wrap = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      const err = e as grpc.ServiceError;
      if (typeof err.code !== 'number' || err.metadata === undefined) throw e;
      const md: Record<string, string> = {};
      for (const [k, v] of Object.entries(err.metadata.getMap())) if (typeof v === 'string') md[k] = v;
      throw new RpcFailure(err.code as number as Code, err.details, md);
    }
  };
  const auth = (bearer: string | undefined) => (bearer === undefined ? {} : { token: bearer });
  return {
    wire: 'grpc',
    createToken: (req, b) => wrap(tokens.call('createToken', req, auth(b))),
    getToken: (req, b) => wrap(tokens.call('getToken', req, auth(b))),
    listTokens: (req, b) => wrap(tokens.call('listTokens', req, auth(b))),
    rotateToken: (req, b) => wrap(tokens.call('rotateToken', req, auth(b))),
    revokeToken: (req, b) => wrap(tokens.call('revokeToken', req, auth(b))),
    revokeFamily: (req, b) => wrap(tokens.call('revokeFamily', req, auth(b))),
    introspectToken: (req, b) => wrap(tokens.call('introspectToken', req, auth(b))),
    exchangeToken: (req) => wrap(exchange.call('exchangeToken', req)),
    close() {
      tokens.close();
      exchange.close();
    },
  };
}

export function connectApi(s: Pick<TestServer, 'httpUrl'>): Api {
  const tokens = connectClient(TokenService, s.httpUrl);
  const exchange = connectClient(TokenExchangeService, s.httpUrl);
  const wrap = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof ConnectError)) throw e;
      const md: Record<string, string> = {};
      e.metadata.forEach((v, k) => void (md[k] = v));
      throw new RpcFailure(e.code, e.rawMessage, md);
    }
  };
  const auth = (bearer: string | undefined) => (bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } });
  return {
    wire: 'connect',
    createToken: (req, b) => wrap(tokens.createToken(req, auth(b))),
    getToken: (req, b) => wrap(tokens.getToken(req, auth(b))),
    listTokens: (req, b) => wrap(tokens.listTokens(req, auth(b))),
    rotateToken: (req, b) => wrap(tokens.rotateToken(req, auth(b))),
    revokeToken: (req, b) => wrap(tokens.revokeToken(req, auth(b))),
    revokeFamily: (req, b) => wrap(tokens.revokeFamily(req, auth(b))),
    introspectToken: (req, b) => wrap(tokens.introspectToken(req, auth(b))),
    exchangeToken: (req) => wrap(exchange.exchangeToken(req)),
    close() {},
  };
}

/** Awaits a call that must fail; returns the normalised failure (fails the test if it succeeded). */
export async function failure(p: Promise<unknown>): Promise<RpcFailure> {
  let value: unknown;
  try {
    value = await p;
  } catch (e) {
    if (e instanceof RpcFailure) return e;
    throw e;
  }
  // The response may carry a fresh secret: mask it before it reaches the test output.
  const shown = redactSecrets(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  throw new Error(`expected the call to fail, but it returned ${shown}`);
}

/** A fresh, unguessable idempotency key (16-128 chars of [A-Za-z0-9_-]). */
export function newKey(): string {
  return randomBytes(24).toString('base64url');
}
