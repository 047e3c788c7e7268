import type { ServiceImpl } from '@connectrpc/connect';
import type { HealthService } from '../gen/rotor/v1/health_service_pb.js';

/** `rotor.v1.HealthService`: answers without I/O; also the benchmarks' no-op baseline. */
export const healthServiceImpl: ServiceImpl<typeof HealthService> = {
  check: () => ({ status: 'SERVING' }),
};
