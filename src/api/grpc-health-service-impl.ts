import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import type { HealthState, ServingStatus } from '../app/health-state.js';
import { type Health, HealthCheckResponse_ServingStatus } from '../gen/grpc/health/v1/health_pb.js';

const wire: Record<ServingStatus, HealthCheckResponse_ServingStatus> = {
  SERVING: HealthCheckResponse_ServingStatus.SERVING,
  NOT_SERVING: HealthCheckResponse_ServingStatus.NOT_SERVING,
};

/**
 * `grpc.health.v1.Health` over Connect (the HTTP port), answering what `grpc-health-check` answers
 * on the gRPC port (src/api/grpc-health.ts) from the same state: Check fails with NOT_FOUND for a
 * service that is not reported; Watch sends the current status (SERVICE_UNKNOWN for such a
 * service, and stays open, as the protocol says), then each change, until the client leaves or
 * the server shuts down.
 */
export function grpcHealthServiceImpl(state: HealthState): ServiceImpl<typeof Health> {
  return {
    async check(req) {
      const status = await state.check(req.service);
      if (status === undefined)
        throw new ConnectError(`Health status unknown for service ${req.service}`, Code.NotFound);
      return { status: wire[status] };
    },
    watch: (req, ctx) => watchStatus(state, req.service, ctx),
    list() {
      const statuses: Record<string, { status: HealthCheckResponse_ServingStatus }> = {};
      for (const service of state.services()) {
        const status = state.status(service);
        if (status !== undefined) statuses[service] = { status: wire[status] };
      }
      return { statuses };
    },
  };
}

async function* watchStatus(state: HealthState, service: string, ctx: HandlerContext) {
  const release = state.retain();
  const pending: ServingStatus[] = [];
  let closed = false;
  let wake: (() => void) | undefined;
  const poke = () => {
    wake?.();
    wake = undefined;
  };
  const offChange = state.onChange((changed, status) => {
    if (changed !== service) return;
    pending.push(status);
    poke();
  });
  const offClose = state.onClose(() => {
    closed = true;
    poke();
  });
  ctx.signal.addEventListener('abort', poke, { once: true });
  try {
    const current = state.status(service);
    yield { status: current === undefined ? HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN : wire[current] };
    for (;;) {
      const status = pending.shift();
      if (status !== undefined) {
        yield { status: wire[status] };
        continue;
      }
      if (closed || ctx.signal.aborted) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    ctx.signal.removeEventListener('abort', poke);
    offChange();
    offClose();
    release();
  }
}
