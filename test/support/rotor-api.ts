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
  type ListEventsRequestSchema,
  type ListEventsResponseSchema,
  type ListTokensRequestSchema,
  type ListTokensResponseSchema,
  type RevokeFamilyRequestSchema,
  type RevokeFamilyResponseSchema,
  type RevokeTokenRequestSchema,
  type RevokeTokenResponseSchema,
  type RotateTokenRequestSchema,
  type RotateTokenResponseSchema,
} from '../../src/gen/rotor/v1/token_service_pb.js';
import {
  ExpiryService,
  type ExpiryEvent,
  type WatchExpiryRequestSchema,
} from '../../src/gen/rotor/v1/expiry_service_pb.js';
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
  createToken(
    req: Req<typeof CreateTokenRequestSchema>,
    bearer: string,
  ): Promise<Res<typeof CreateTokenResponseSchema>>;
  getToken(req: Req<typeof GetTokenRequestSchema>, bearer: string): Promise<Res<typeof GetTokenResponseSchema>>;
  listTokens(req: Req<typeof ListTokensRequestSchema>, bearer: string): Promise<Res<typeof ListTokensResponseSchema>>;
  rotateToken(
    req: Req<typeof RotateTokenRequestSchema>,
    bearer: string | undefined,
  ): Promise<Res<typeof RotateTokenResponseSchema>>;
  revokeToken(
    req: Req<typeof RevokeTokenRequestSchema>,
    bearer: string,
  ): Promise<Res<typeof RevokeTokenResponseSchema>>;
  revokeFamily(
    req: Req<typeof RevokeFamilyRequestSchema>,
    bearer: string,
  ): Promise<Res<typeof RevokeFamilyResponseSchema>>;
  introspectToken(
    req: Req<typeof IntrospectTokenRequestSchema>,
    bearer: string,
  ): Promise<Res<typeof IntrospectTokenResponseSchema>>;
  exchangeToken(req: Req<typeof ExchangeTokenRequestSchema>): Promise<Res<typeof ExchangeTokenResponseSchema>>;
  listEvents(req: Req<typeof ListEventsRequestSchema>, bearer: string): Promise<Res<typeof ListEventsResponseSchema>>;
  /** Opens WatchExpiry; events collect in the returned WatchStream. */
  watchExpiry(req: Req<typeof WatchExpiryRequestSchema>, bearer: string | undefined): WatchStream;
  close(): void;
}

/**
 * One open WatchExpiry stream, the same over either transport: every event received so far, a
 * way to wait for more, and how it ended (undefined for OK, else the RpcFailure).
 */
export class WatchStream {
  readonly received: ExpiryEvent[] = [];
  /** Resolves when the stream ends: undefined when it ended OK, the failure otherwise. */
  readonly ended: Promise<RpcFailure | undefined>;
  private finish!: (f: RpcFailure | undefined) => void;
  private listeners = new Set<() => void>();
  private cursor = 0;
  done = false;

  constructor(
    private readonly cancelFn: () => void,
    private readonly pauseFn: (paused: boolean) => void = () => {
      throw new Error('pause is only available on grpc-js streams');
    },
  ) {
    this.ended = new Promise((resolve) => (this.finish = resolve));
  }

  /** Transport side: an event arrived. */
  push(e: ExpiryEvent): void {
    this.received.push(e);
    for (const l of this.listeners) l();
  }

  /** Transport side: the stream ended. */
  end(f: RpcFailure | undefined): void {
    if (this.done) return;
    this.done = true;
    this.finish(f);
    for (const l of this.listeners) l();
  }

  /** Waits until `pred` holds for the events received (or fails after `timeoutMs`). */
  async until(
    pred: (events: ExpiryEvent[]) => boolean,
    timeoutMs = 10_000,
    what = 'the expected events',
  ): Promise<ExpiryEvent[]> {
    if (pred(this.received)) return this.received;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(
          new Error(
            `timed out waiting for ${what}; received ${this.received.length} events${this.done ? ', stream ended' : ''}`,
          ),
        );
      }, timeoutMs);
      const check = () => {
        if (!pred(this.received)) {
          if (this.done) {
            clearTimeout(timer);
            this.listeners.delete(check);
            reject(new Error(`stream ended before ${what}; received ${this.received.length} events`));
          }
          return;
        }
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve();
      };
      this.listeners.add(check);
    });
    return this.received;
  }

  /** The next event not returned by next() yet. */
  async next(timeoutMs = 10_000): Promise<ExpiryEvent> {
    const i = this.cursor;
    await this.until((r) => r.length > i, timeoutMs, `event #${i + 1}`);
    this.cursor++;
    return this.received[i]!;
  }

  /** Stops reading (grpc-js only): the client's buffers fill and the server sees backpressure. */
  pause(): void {
    this.pauseFn(true);
  }

  resume(): void {
    this.pauseFn(false);
  }

  /** Aborts the call, as a client that is killed mid-stream. */
  cancel(): void {
    this.cancelFn();
  }
}

function grpcFailure(err: grpc.ServiceError): RpcFailure {
  const md: Record<string, string> = {};
  for (const [k, v] of Object.entries(err.metadata?.getMap() ?? {})) if (typeof v === 'string') md[k] = v;
  return new RpcFailure(err.code as number as Code, err.details, md);
}

export function grpcApi(s: Pick<TestServer, 'grpcAddress'>): Api {
  const tokens = grpcClient(TokenService, s.grpcAddress);
  const exchange = grpcClient(TokenExchangeService, s.grpcAddress);
  const expiry = grpcClient(ExpiryService, s.grpcAddress);
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
    listEvents: (req, b) => wrap(tokens.call('listEvents', req, auth(b))),
    watchExpiry(req, bearer) {
      const call = expiry.stream('watchExpiry', req, auth(bearer));
      const w = new WatchStream(
        () => call.cancel(),
        (paused) => void (paused ? call.pause() : call.resume()),
      );
      call.on('data', (e: ExpiryEvent) => w.push(e));
      call.on('error', (err: grpc.ServiceError) => w.end(grpcFailure(err)));
      call.on('end', () => w.end(undefined));
      return w;
    },
    close() {
      tokens.close();
      exchange.close();
      expiry.close();
    },
  };
}

export function connectApi(s: Pick<TestServer, 'httpUrl'>): Api {
  const tokens = connectClient(TokenService, s.httpUrl);
  const exchange = connectClient(TokenExchangeService, s.httpUrl);
  const expiry = connectClient(ExpiryService, s.httpUrl);
  const wrap = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      if (!(e instanceof ConnectError)) throw e;
      const md: Record<string, string> = {};
      e.metadata.forEach((v, k) => {
        md[k] = v;
      });
      throw new RpcFailure(e.code, e.rawMessage, md);
    }
  };
  const auth = (bearer: string | undefined) =>
    bearer === undefined ? {} : { headers: { authorization: `Bearer ${bearer}` } };
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
    listEvents: (req, b) => wrap(tokens.listEvents(req, auth(b))),
    watchExpiry(req, bearer) {
      const abort = new AbortController();
      const w = new WatchStream(() => abort.abort());
      void (async () => {
        try {
          for await (const e of expiry.watchExpiry(req, { ...auth(bearer), signal: abort.signal })) w.push(e);
          w.end(undefined);
        } catch (e) {
          const ce = ConnectError.from(e);
          const md: Record<string, string> = {};
          ce.metadata.forEach((v, k) => {
            md[k] = v;
          });
          w.end(new RpcFailure(ce.code, ce.rawMessage, md));
        }
      })();
      return w;
    },
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

/** A fresh, unguessable idempotency key (22-128 chars of [A-Za-z0-9_-], 128+ random bits). */
export function newKey(): string {
  return randomBytes(24).toString('base64url');
}
