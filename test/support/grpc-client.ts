import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';

type MethodsOf<S> = S extends { method: infer M } ? M : never;
type InputOf<M> = M extends DescMethodUnary<infer I extends DescMessage, DescMessage> ? MessageInitShape<I> : never;
type OutputOf<M> = M extends DescMethodUnary<DescMessage, infer O extends DescMessage> ? MessageShape<O> : never;
type StreamInputOf<M> =
  M extends DescMethodServerStreaming<infer I extends DescMessage, DescMessage> ? MessageInitShape<I> : never;
type StreamOutputOf<M> =
  M extends DescMethodServerStreaming<DescMessage, infer O extends DescMessage> ? MessageShape<O> : never;

/** A @grpc/grpc-js client for one Rotor service, built from the generated descriptor. */
export interface GrpcServiceClient<S extends DescService> {
  /** Calls a unary method by its local name; rejects with a grpc.ServiceError (code, details, metadata). */
  call<K extends keyof MethodsOf<S> & string>(
    method: K,
    request: InputOf<MethodsOf<S>[K]>,
    opts?: { token?: string; metadata?: Record<string, string> },
  ): Promise<OutputOf<MethodsOf<S>[K]>>;
  /** Opens a server stream: 'data' carries decoded messages, 'error' a grpc.ServiceError; cancel() aborts it. */
  stream<K extends keyof MethodsOf<S> & string>(
    method: K,
    request: StreamInputOf<MethodsOf<S>[K]>,
    opts?: { token?: string; metadata?: Record<string, string> },
  ): grpc.ClientReadableStream<StreamOutputOf<MethodsOf<S>[K]>>;
  close(): void;
}

/** Creates a plain grpc-js client (no Connect code involved) for `service` at `address`. */
export function grpcClient<S extends DescService>(
  service: S,
  address: string,
  channelOptions: grpc.ChannelOptions = {},
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
): GrpcServiceClient<S> {
  const definition: grpc.ServiceDefinition = Object.fromEntries(
    service.methods.map((m) => [
      m.localName,
      {
        path: `/${service.typeName}/${m.name}`,
        requestStream: false,
        responseStream: m.methodKind === 'server_streaming',
        requestSerialize: (msg: unknown) => Buffer.from(toBinary(m.input, create(m.input, msg as never))),
        requestDeserialize: (b: Buffer) => fromBinary(m.input, b),
        responseSerialize: (msg: unknown) => Buffer.from(toBinary(m.output, msg as never)),
        responseDeserialize: (b: Buffer) => fromBinary(m.output, b),
      },
    ]),
  );
  const Ctor = grpc.makeGenericClientConstructor(definition, service.typeName);
  const client = new Ctor(address, credentials, channelOptions) as unknown as grpc.Client &
    Record<
      string,
      (req: unknown, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void
    >;
  return {
    call(method, request, opts = {}) {
      const md = new grpc.Metadata();
      if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
      for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
      return new Promise((resolve, reject) => {
        const fn = client[method];
        if (!fn) throw new Error(`no method ${method}`);
        fn.call(client, request, md, (err, res) => (err ? reject(err) : resolve(res as never)));
      });
    },
    stream(method, request, opts = {}) {
      const md = new grpc.Metadata();
      if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
      for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
      const fn = (
        client as unknown as Record<string, (req: unknown, md: grpc.Metadata) => grpc.ClientReadableStream<never>>
      )[method];
      if (!fn) throw new Error(`no method ${method}`);
      return fn.call(client, request, md);
    },
    close: () => client.close(),
  };
}

/** Sends raw bytes as one gRPC message to `path` (for garbage-input tests). */
export function grpcRaw(address: string, path: string, payload: Buffer): Promise<{ code: number; details: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      payload,
      (err) => {
        client.close();
        resolve({ code: err ? err.code : 0, details: err ? err.details : '' });
      },
    );
  });
}
