import type { DescService } from '@bufbuild/protobuf';
import {
  Code,
  type ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type ServiceImpl,
} from '@connectrpc/connect';
import type { Brakes } from '../app/brakes.js';
import type { AppContext } from '../app/context.js';
import type { HealthState } from '../app/health-state.js';
import type { WatchRuntime } from '../app/watch-ports.js';
import { Health } from '../gen/grpc/health/v1/health_pb.js';
import { ExpiryService } from '../gen/rotor/v1/expiry_service_pb.js';
import { HealthService } from '../gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../gen/rotor/v1/token_service_pb.js';
import { AccessRecord } from './access-log.js';
import { callMeta, callMetaKey } from './call-meta.js';
import { toConnectError } from './connect-errors.js';
import { expiryServiceImpl } from './expiry-service-impl.js';
import { grpcHealthServiceImpl } from './grpc-health-service-impl.js';
import { healthServiceImpl } from './health-service-impl.js';
import { RpcStats } from './rpc-stats.js';
import { mapStreamErrors } from './streams.js';
import { tokenExchangeServiceImpl } from './token-exchange-service-impl.js';
import { tokenServiceImpl } from './token-service-impl.js';

/** A service descriptor with its implementation, ready to mount on either port. */
export interface MountedService {
  service: DescService;
  impl: Partial<ServiceImpl<DescService>>;
}

type UnaryFn = (req: unknown, ctx: HandlerContext) => unknown;
type StreamFn = (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;

/** Notes a failure in the call's access record, when the access log is on (src/api/access-log.ts). */
function noteFailure(ctx: HandlerContext, error: ConnectError): void {
  const rec = ctx.values.get(callMetaKey);
  if (rec instanceof AccessRecord) rec.failed(error);
}

/** Notes how a call that did not fail ended (0: ok; Connect's Canceled) in its access record. */
function noteEnd(ctx: HandlerContext, code: Code | 0): void {
  const rec = ctx.values.get(callMetaKey);
  if (rec instanceof AccessRecord) rec.ended(code);
}

/**
 * A stream under the failed-authentication brake: its first item (where WatchExpiry authenticates)
 * is refused for a blocked peer, and a failure there is counted; later items pass untouched.
 */
function brakedStream(source: AsyncIterable<unknown>, brakes: Brakes, ctx: HandlerContext): AsyncIterable<unknown> {
  return {
    [Symbol.asyncIterator]() {
      const it = source[Symbol.asyncIterator]();
      const iterator: AsyncIterator<unknown> = {
        next: async () => {
          iterator.next = () => it.next();
          const peer = callMeta(ctx).peer;
          try {
            brakes.checkPeer(peer);
            return await it.next();
          } catch (e) {
            throw await brakes.afterFailure(peer, e);
          }
        },
        return: (value?: unknown) => (it.return ? it.return(value) : Promise.resolve({ done: true, value })),
      };
      return iterator;
    },
  };
}

/**
 * Wraps every method so that errors leave through the one mapping in connect-errors.ts, and counts
 * how each call ended (and how long a unary call took) in `stats`: one place for both ports. A
 * failure is also noted in the call's access record (the HTTP port's lines get their code here).
 * With `brakes`, the failed-authentication brake (docs/limits.md) applies here too, for both
 * ports: a call from a blocked peer is refused before its handler runs, and a failed one is counted.
 */
function withErrorMapping(
  app: AppContext,
  service: DescService,
  impl: object,
  stats: RpcStats,
  brakes?: Brakes,
): Partial<ServiceImpl<DescService>> {
  const wrapped: Record<string, UnaryFn | StreamFn> = {};
  for (const [name, fn] of Object.entries(impl) as [string, UnaryFn][]) {
    const method = service.methods.find((m) => m.localName === name);
    const where = `${service.typeName}/${method?.name ?? name}`;
    if (method?.methodKind === 'server_streaming') {
      const counted = stats.method(where, true);
      wrapped[name] = (req, ctx) =>
        mapStreamErrors(
          brakes
            ? brakedStream((fn as unknown as StreamFn)(req, ctx), brakes, ctx)
            : (fn as unknown as StreamFn)(req, ctx),
          (e) => toConnectError(e, app.log, where),
          (end) => {
            // A client that went away (or whose deadline passed) ends its stream through the abort
            // signal, whatever error that raises inside.
            if (ctx.signal.aborted || end.how === 'returned') {
              counted.end('canceled');
              noteEnd(ctx, Code.Canceled);
            } else if (end.how === 'done') {
              counted.end('ok');
              noteEnd(ctx, 0);
            } else {
              counted.failed(end.error as ConnectError);
              noteFailure(ctx, end.error as ConnectError);
            }
          },
        );
      continue;
    }
    const counted = stats.method(where, false);
    const failed = (e: unknown, ctx: HandlerContext, started: number): ConnectError => {
      const ce = toConnectError(e, app.log, where);
      counted.failed(ce, started);
      noteFailure(ctx, ce);
      return ce;
    };
    // The brake counts the failure first (it may turn it into rate_limited for a blocked peer).
    const braked = async (e: unknown, ctx: HandlerContext, started: number): Promise<never> => {
      throw failed(await brakes!.afterFailure(callMeta(ctx).peer, e), ctx, started);
    };
    const ended = (res: unknown, ctx: HandlerContext, started: number): unknown => {
      counted.end('ok', started);
      noteEnd(ctx, 0);
      return res;
    };
    // Not an async function: an answer that needs no waiting (the no-op) goes back in the same turn.
    wrapped[name] = (req, ctx) => {
      const started = performance.now();
      let res: unknown;
      try {
        if (brakes?.anyBlocked) brakes.checkPeer(callMeta(ctx).peer);
        res = fn(req, ctx);
      } catch (e) {
        if (brakes) return braked(e, ctx, started);
        throw failed(e, ctx, started);
      }
      if (!(res instanceof Promise)) return ended(res, ctx, started);
      return res.then(
        (r: unknown) => ended(r, ctx, started),
        (e: unknown) => {
          if (brakes) return braked(e, ctx, started);
          throw failed(e, ctx, started);
        },
      );
    };
  }
  return wrapped as unknown as Partial<ServiceImpl<DescService>>;
}

/**
 * Every service Rotor serves; handlers are written once and mounted on both ports. ExpiryService
 * needs the live feed, so it is mounted only when `watch` is given (the composition root does).
 */
export function rotorServices(
  app: AppContext,
  watch?: WatchRuntime,
  stats: RpcStats = new RpcStats(),
): MountedService[] {
  const list: [DescService, object][] = [
    [TokenService, tokenServiceImpl(app)],
    [TokenExchangeService, tokenExchangeServiceImpl(app)],
    [HealthService, healthServiceImpl],
  ];
  if (watch) list.push([ExpiryService, expiryServiceImpl(app, watch)]);
  // Health checks authenticate nobody: a blocked peer's load balancer still learns the truth.
  const brakes = app.brakes?.on('failed_auth') ? app.brakes : undefined;
  return list.map(([service, impl]) => ({
    service,
    impl: withErrorMapping(app, service, impl, stats, service === HealthService ? undefined : brakes),
  }));
}

/**
 * `grpc.health.v1.Health` for the HTTP port (Connect, gRPC-Web). The gRPC port serves the same
 * service with gRPC's own implementation instead (src/api/grpc-health.ts), so it is not in
 * rotorServices' list.
 */
export function standardHealthService(app: AppContext, state: HealthState, stats: RpcStats): MountedService {
  return { service: Health, impl: withErrorMapping(app, Health, grpcHealthServiceImpl(state), stats) };
}

/** Registers the services on a Connect router (the HTTP port). */
export function connectRoutes(services: MountedService[]) {
  return (router: ConnectRouter) => {
    for (const s of services) router.service(s.service, s.impl);
  };
}
