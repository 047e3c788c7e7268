import { create, fromBinary, toBinary, type DescMessage, type DescService, type MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';

/** A plain grpc-js client for one Rotor service, built from the generated descriptor. */
export interface BenchClient {
  /** Calls a unary method by its local name (e.g. `introspectToken`); rejects with a grpc.ServiceError. */
  call(method: string, request: unknown, token?: string): Promise<unknown>;
  close(): void;
}

/** Creates a grpc-js client for `service` at `address` (no Connect code on the client side). */
export function benchClient(service: DescService, address: string): BenchClient {
  const definition: grpc.ServiceDefinition = Object.fromEntries(
    service.methods.map((m) => [
      m.localName,
      {
        path: `/${service.typeName}/${m.name}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (msg: unknown) => Buffer.from(toBinary(m.input, create(m.input, msg as never))),
        requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
        responseSerialize: (msg: unknown) => Buffer.from(toBinary(m.output, msg as never)),
        responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      },
    ]),
  );
  const Ctor = grpc.makeGenericClientConstructor(definition, service.typeName);
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client &
    Record<string, (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;
  return {
    call(method, request, token) {
      const fn = client[method];
      if (!fn) return Promise.reject(new Error(`no method ${method} on ${service.typeName}`));
      const md = new grpc.Metadata();
      if (token !== undefined) md.set('authorization', `Bearer ${token}`);
      return new Promise((resolve, reject) => {
        fn.call(client, request, md, (err, res) => (err ? reject(err) : resolve(res)));
      });
    },
    close: () => client.close(),
  };
}

/** One length-prefixed gRPC message (uncompressed): flag byte, 4-byte big-endian length, protobuf. */
export function grpcFrame<S extends DescMessage>(schema: S, message: MessageInitShape<S>): Buffer {
  const body = toBinary(schema, create(schema, message));
  const frame = Buffer.alloc(5 + body.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

/** Sends a pre-encoded gRPC frame exactly as h2load will, and returns the status and the response message. */
export function rawUnary(address: string, path: string, frame: Buffer, token?: string): Promise<{ code: number; details: string; response: Buffer }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      frame.subarray(5),
      md,
      (err, res) => {
        client.close();
        resolve({ code: err ? err.code : 0, details: err ? err.details : '', response: res ?? Buffer.alloc(0) });
      },
    );
  });
}
