import { create, toBinary, type DescMessage, type DescService, type MessageInitShape } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { grpcClient } from '../test/support/grpc-client.js';

/** A plain grpc-js client for one Rotor service, untyped for the load loops. */
export interface BenchClient {
  /** Calls a unary method by its local name (e.g. `introspectToken`); rejects with a grpc.ServiceError. */
  call(method: string, request: unknown, token?: string): Promise<unknown>;
  close(): void;
}

/** The tests' grpc-js client (no Connect code on the client side), with the bench's call shape. */
export function benchClient(service: DescService, address: string): BenchClient {
  const client = grpcClient(service, address) as unknown as {
    call(method: string, request: unknown, opts: { token?: string }): Promise<unknown>;
    close(): void;
  };
  return {
    call: (method, request, token) => client.call(method, request, token === undefined ? {} : { token }),
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
export function rawUnary(
  address: string,
  path: string,
  frame: Buffer,
  token?: string,
): Promise<{ code: number; details: string; response: Buffer }> {
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
