import type { DescService } from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { AppContext } from '../app/context.js';
import { HealthService } from '../gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../gen/rotor/v1/token_service_pb.js';
import { toConnectError } from './connect-errors.js';
import { healthServiceImpl } from './health-service-impl.js';
import { tokenExchangeServiceImpl } from './token-exchange-service-impl.js';
import { tokenServiceImpl } from './token-service-impl.js';

/** A service descriptor with its implementation, ready to mount on either port. */
export interface MountedService {
  service: DescService;
  impl: Partial<ServiceImpl<DescService>>;
}

type UnaryFn = (req: unknown, ctx: HandlerContext) => unknown;

/** Wraps every method so that errors leave through the one mapping in connect-errors.ts. */
function withErrorMapping(app: AppContext, service: DescService, impl: object): Partial<ServiceImpl<DescService>> {
  const wrapped: Record<string, UnaryFn> = {};
  for (const [name, fn] of Object.entries(impl) as [string, UnaryFn][]) {
    wrapped[name] = async (req, ctx) => {
      try {
        return await fn(req, ctx);
      } catch (e) {
        throw toConnectError(e, app.log, `${service.typeName}/${name}`);
      }
    };
  }
  return wrapped as unknown as Partial<ServiceImpl<DescService>>;
}

/** Every service Rotor serves; handlers are written once and mounted on both ports. */
export function rotorServices(app: AppContext): MountedService[] {
  const list: [DescService, object][] = [
    [TokenService, tokenServiceImpl(app)],
    [TokenExchangeService, tokenExchangeServiceImpl(app)],
    [HealthService, healthServiceImpl],
  ];
  return list.map(([service, impl]) => ({ service, impl: withErrorMapping(app, service, impl) }));
}

/** Registers the services on a Connect router (the HTTP port). */
export function connectRoutes(services: MountedService[]) {
  return (router: ConnectRouter) => {
    for (const s of services) router.service(s.service, s.impl);
  };
}
