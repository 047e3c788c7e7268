import type { DescService } from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { AppContext } from '../app/context.js';
import type { WatchRuntime } from '../app/watch-ports.js';
import { ExpiryService } from '../gen/rotor/v1/expiry_service_pb.js';
import { HealthService } from '../gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../gen/rotor/v1/token_service_pb.js';
import { toConnectError } from './connect-errors.js';
import { expiryServiceImpl } from './expiry-service-impl.js';
import { healthServiceImpl } from './health-service-impl.js';
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

/** Wraps every method so that errors leave through the one mapping in connect-errors.ts. */
function withErrorMapping(app: AppContext, service: DescService, impl: object): Partial<ServiceImpl<DescService>> {
  const wrapped: Record<string, UnaryFn | StreamFn> = {};
  for (const [name, fn] of Object.entries(impl) as [string, UnaryFn][]) {
    const where = `${service.typeName}/${name}`;
    if (service.methods.find((m) => m.localName === name)?.methodKind === 'server_streaming') {
      wrapped[name] = (req, ctx) => mapStreamErrors((fn as unknown as StreamFn)(req, ctx), (e) => toConnectError(e, app.log, where));
      continue;
    }
    wrapped[name] = async (req, ctx) => {
      try {
        return await fn(req, ctx);
      } catch (e) {
        throw toConnectError(e, app.log, where);
      }
    };
  }
  return wrapped as unknown as Partial<ServiceImpl<DescService>>;
}

/**
 * Every service Rotor serves; handlers are written once and mounted on both ports. ExpiryService
 * needs the live feed, so it is mounted only when `watch` is given (the composition root does).
 */
export function rotorServices(app: AppContext, watch?: WatchRuntime): MountedService[] {
  const list: [DescService, object][] = [
    [TokenService, tokenServiceImpl(app)],
    [TokenExchangeService, tokenExchangeServiceImpl(app)],
    [HealthService, healthServiceImpl],
  ];
  if (watch) list.push([ExpiryService, expiryServiceImpl(app, watch)]);
  return list.map(([service, impl]) => ({ service, impl: withErrorMapping(app, service, impl) }));
}

/** Registers the services on a Connect router (the HTTP port). */
export function connectRoutes(services: MountedService[]) {
  return (router: ConnectRouter) => {
    for (const s of services) router.service(s.service, s.impl);
  };
}
