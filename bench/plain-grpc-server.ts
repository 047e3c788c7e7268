/**
 * The baseline a user would compare Rotor's gRPC port against: a plain @grpc/grpc-js server with
 * one no-op unary method and nothing else, run as a child process exactly as `rotor serve` is
 * (same node, same NODE_OPTIONS, stdout and stderr treated alike). It serves the path of Rotor's
 * own no-op (`/rotor.v1.HealthService/Check`) with the same messages, encoded with
 * @bufbuild/protobuf from the same schema, so h2load sends both servers the same bytes and gets the
 * same answer back. No Rotor code runs in it: no listener of Rotor's, no handler adapter, no
 * context, no metrics, no access log, grpc-js's default server options.
 *
 * Usage: node plain-grpc-server.js <port>; prints `listening <port>` on stdout once bound.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { CheckRequestSchema, CheckResponseSchema, HealthService } from '../src/gen/rotor/v1/health_service_pb.js';

const port = Number(process.argv[2] ?? '0');
const server = new grpc.Server();
server.addService(
  {
    check: {
      path: `/${HealthService.typeName}/${HealthService.method.check.name}`,
      requestStream: false,
      responseStream: false,
      requestDeserialize: (b: Buffer) => fromBinary(CheckRequestSchema, b),
      requestSerialize: (m: unknown) => Buffer.from(toBinary(CheckRequestSchema, m as never)),
      responseSerialize: (m: unknown) => Buffer.from(toBinary(CheckResponseSchema, m as never)),
      responseDeserialize: (b: Buffer) => fromBinary(CheckResponseSchema, b),
    },
  },
  {
    check: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      callback(null, create(CheckResponseSchema, { status: 'SERVING' }));
    },
  },
);
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    process.stderr.write(`plain grpc-js server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`listening ${bound}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
