import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { HealthState } from '../app/health-state.js';

type Handler = (...args: never[]) => void;
type WatchCall = grpc.ServerWritableStream<{ service: string }, unknown>;

/**
 * Serves `grpc.health.v1.Health` on the gRPC port with gRPC's own implementation
 * (`grpc-health-check`), so the standard clients (Kubernetes `grpc:` probes, grpc_health_probe,
 * Envoy, grpc-js `healthCheckConfig`) talk to the reference code. Its statuses follow `state`.
 * Its handlers are wrapped on the way in: Check waits for a fresh database verdict first (the
 * package answers from its map), a Watch keeps the database pinged while it is open, and every
 * Watch ends when the state closes (shutdown), so open watches do not hold the drain.
 */
export function addGrpcHealthService(server: grpc.Server, state: HealthState): void {
  const statusMap = Object.fromEntries(state.services().map((s) => [s, state.status(s) ?? 'NOT_SERVING']));
  const health = new HealthImplementation(statusMap);
  state.onChange((service, status) => health.setStatus(service, status));
  const watches = new Set<WatchCall>();
  state.onClose(() => {
    for (const call of watches) call.end();
    watches.clear();
  });
  health.addToServer({
    addService(service, implementation) {
      const check = implementation.check as unknown as grpc.handleUnaryCall<{ service: string }, unknown>;
      const watch = implementation.watch as unknown as grpc.handleServerStreamingCall<{ service: string }, unknown>;
      server.addService(
        service as grpc.ServiceDefinition,
        {
          ...(implementation as Record<string, Handler>),
          check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
            void state.check(call.request.service).then(() => check(call, callback));
          },
          watch: (call: WatchCall) => {
            const release = state.retain();
            watches.add(call);
            const ended = () => {
              release();
              watches.delete(call);
            };
            call.on('cancelled', ended);
            call.on('finish', ended);
            watch(call);
          },
        } as grpc.UntypedServiceImplementation,
      );
    },
  });
}
