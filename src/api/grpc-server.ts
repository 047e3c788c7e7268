import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService } from '@bufbuild/protobuf';
import { Code, ConnectError, type ContextKey, type ContextValues, type HandlerContext } from '@connectrpc/connect';
import { setTrailerStatus } from '@connectrpc/connect/protocol-grpc';
import * as grpc from '@grpc/grpc-js';
import type { DpopRequest } from '../app/dpop.js';
import type { CallMeta } from '../app/context.js';
import type { Logger } from '../app/logger-port.js';
import type { AccessLog } from './access-log.js';
import { callMetaKey } from './call-meta.js';
import { CallTracker } from './call-tracker.js';
import { toConnectError } from './connect-errors.js';
import { flatDecoder } from './flat-decoder.js';
import { flatEncoder } from './flat-encoder.js';
import { AccessLoggedServer, accessRecordOf } from './grpc-access-log.js';
import { installDecompressionStatus } from './grpc-decompression.js';
import type { GrpcConnectionLimits } from './grpc-listener.js';
import type { MountedService } from './services.js';

/** Largest request accepted on the gRPC port; Rotor messages are small. */
const MAX_GRPC_MESSAGE_BYTES = 64 * 1024;

/** A request that failed to decode; the handler answers INVALID_ARGUMENT instead of grpc-js's INTERNAL. */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

function metadataToHeaders(md: grpc.Metadata): Headers {
  const h = new Headers();
  for (const [key, value] of Object.entries(md.getMap())) {
    if (typeof value === 'string') h.append(key, value);
  }
  return h;
}

type Unary = (req: unknown, ctx: HandlerContext) => unknown;
type ServerStreaming = (req: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;
type AnyServerCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

function authorizationOf(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  return typeof v === 'string' ? v : undefined;
}

/**
 * The DPoP facts of a gRPC call: the `dpop` metadata and the URL the call reached,
 * `http(s)://<:authority>/<service>/<method>` (docs/dpop.md, "htu"). Undefined without a proof.
 */
function dpopOf(call: AnyServerCall, mounted: MountedService, method: DescMethod): DpopRequest | undefined {
  const proof = call.metadata.get('dpop')[0];
  if (proof === undefined) return undefined;
  const path = `/${mounted.service.typeName}/${method.name}`;
  const scheme = call.getAuthContext().transportSecurityType === 'ssl' ? 'https' : 'http';
  return { proof: String(proof), htm: 'POST', url: `${scheme}://${call.getHost()}${path}`, path };
}

/**
 * The context values of one gRPC-port call: its CallMeta in a field, which is all Rotor's
 * handlers read, and anything else in a map made on first use. Connect's createContextValues
 * makes an object and three closures per call and stores by symbol.
 */
class CallValues implements ContextValues {
  private other: Map<symbol, unknown> | undefined;

  constructor(private meta: CallMeta | undefined) {}

  get<T>(key: ContextKey<T>): T {
    if (key === (callMetaKey as ContextKey<unknown>)) return this.meta as T;
    return this.other?.has(key.id) ? (this.other.get(key.id) as T) : key.defaultValue;
  }

  set<T>(key: ContextKey<T>, value: T): this {
    if (key === (callMetaKey as ContextKey<unknown>)) this.meta = value as CallMeta | undefined;
    else {
      this.other ??= new Map();
      this.other.set(key.id, value);
    }
    return this;
  }

  delete(key: ContextKey<unknown>): this {
    if (key === (callMetaKey as ContextKey<unknown>)) this.meta = undefined;
    else this.other?.delete(key.id);
    return this;
  }
}

/**
 * A HandlerContext for one grpc-js call, built lazily: the abort signal and the header objects
 * are only allocated when a handler reads them. Connect's createHandlerContext allocates linked
 * abort controllers on every call, which was the largest single cost of a cached IntrospectToken
 * in the server profile (bench/README.md). A class, so its accessors live on the prototype instead
 * of a dozen closures per call (10,000 open WatchExpiry streams keep 10,000 of these).
 */
class GrpcCallContext implements HandlerContext {
  readonly protocolName = 'grpc';
  readonly requestMethod = 'POST';
  readonly values: ContextValues;
  private controller: AbortController | undefined;
  private reqHeader: Headers | undefined;
  private resHeader: Headers | undefined;
  private resTrailer: Headers | undefined;
  private state: 'running' | 'cancelled' | 'settled' = 'running';
  private readonly deadlineMs: number;

  constructor(
    private readonly mounted: MountedService,
    readonly method: DescMethod,
    private readonly call: AnyServerCall,
  ) {
    const deadline = call.getDeadline();
    this.deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    const dpop = dpopOf(call, mounted, method);
    // With the access log on, the call's access record is its CallMeta (authenticate notes the token in it).
    const rec = accessRecordOf(call);
    if (rec && dpop) rec.dpop = dpop;
    this.values = new CallValues(
      rec ?? { authorization: authorizationOf(call.metadata), peer: call.getPeer(), ...(dpop && { dpop }) },
    );
  }

  get service(): DescService {
    return this.mounted.service;
  }

  get url(): string {
    return `/${this.mounted.service.typeName}/${this.method.name}`;
  }

  timeoutMs(): number | undefined {
    return Number.isFinite(this.deadlineMs) ? Math.max(0, this.deadlineMs - Date.now()) : undefined;
  }

  /**
   * Made on first read, and only then is the call watched for its cancellation: most unary
   * handlers never read it, and a listener per call was a measurable share of the no-op's cost
   * (bench/README.md, "Per-call cost").
   */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.call.cancelled) this.cancelled();
      // grpc-js emits 'cancelled' whenever the stream closes; it only matters for a call still running.
      else this.call.on('cancelled', () => this.cancelled());
    }
    return this.controller.signal;
  }

  get requestHeader(): Headers {
    this.reqHeader ??= metadataToHeaders(this.call.metadata);
    return this.reqHeader;
  }

  get responseHeader(): Headers {
    this.resHeader ??= new Headers();
    return this.resHeader;
  }

  get responseTrailer(): Headers {
    this.resTrailer ??= new Headers();
    return this.resTrailer;
  }

  /** The handler is done: a later 'cancelled' (grpc-js emits it on every close) changes nothing. */
  settle(): void {
    if (this.state === 'running') this.state = 'settled';
  }

  private cancelled(): void {
    if (this.state !== 'running') return;
    this.state = 'cancelled';
    this.controller?.abort(new ConnectError('call cancelled by the client', Code.Canceled));
  }
}

const STATUS_DETAILS_BIN = 'grpc-status-details-bin';

/** A ConnectError (after the one mapping) as a grpc-js status object. */
function statusOf(err: unknown, log: Logger, where: string): grpc.StatusObject {
  const ce = toConnectError(err, log, where);
  const md = new grpc.Metadata();
  ce.metadata.forEach((v, k) => {
    md.set(k, v);
  });
  // Error details (RetryInfo of a brake) travel as a google.rpc.Status, encoded as Connect's gRPC handler does.
  if (ce.details.length > 0) {
    const bin = setTrailerStatus(new Headers(), ce).get(STATUS_DETAILS_BIN);
    if (bin !== null) md.set(STATUS_DETAILS_BIN, Buffer.from(bin, 'base64'));
  }
  return { code: ce.code as number as grpc.status, details: ce.rawMessage, metadata: md };
}

function unaryHandler(
  mounted: MountedService,
  method: DescMethod,
  log: Logger,
  tracker: CallTracker,
): grpc.handleUnaryCall<unknown, unknown> {
  const impl = (mounted.impl as Record<string, Unary | undefined>)[method.localName];
  const where = `${mounted.service.typeName}/${method.name}`;
  // Every path below answers exactly once, through answer(): the handler is done with the call
  // (a later 'cancelled' changes nothing), the tracker counts it finished, grpc-js sends it.
  // Plain functions, not closures made per call (bench/README.md, "Per-call cost").
  const answer = (
    ctx: GrpcCallContext | undefined,
    reply: grpc.sendUnaryData<unknown>,
    err: Partial<grpc.StatusObject> | null,
    value?: unknown,
  ) => {
    ctx?.settle();
    tracker.endUnary();
    reply(err, value);
  };
  // Handlers already map their errors; anything else still leaves through the one mapping.
  const failed = (ctx: GrpcCallContext, reply: grpc.sendUnaryData<unknown>, err: unknown) =>
    answer(ctx, reply, statusOf(err, log, where));
  return (call, reply) => {
    tracker.beginUnary();
    const req = call.request;
    if (req instanceof UndecodableRequest) {
      answer(undefined, reply, {
        code: grpc.status.INVALID_ARGUMENT,
        details: `request is not a valid ${method.input.typeName}: ${req.reason}`,
      });
      return;
    }
    if (!impl) {
      answer(undefined, reply, { code: grpc.status.UNIMPLEMENTED, details: `${method.name} is not implemented` });
      return;
    }
    const ctx = new GrpcCallContext(mounted, method, call);
    // A handler that answers without waiting (the no-op, a cached introspection) is answered in the same turn.
    let res: unknown;
    try {
      res = impl(req, ctx);
    } catch (err) {
      failed(ctx, reply, err);
      return;
    }
    if (res instanceof Promise)
      res.then(
        (value: unknown) => answer(ctx, reply, null, value),
        (err: unknown) => failed(ctx, reply, err),
      );
    else answer(ctx, reply, null, res);
  };
}

/** Resolves when the call can take more data ('drain') or has ended (cancelled or closed). */
function writable(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
  });
}

/**
 * Drives a connect-es server-streaming handler (an async iterable) on a grpc-js call with
 * backpressure: the next message is pulled only after call.write() accepted the previous one, or
 * after 'drain' when it did not. A slow client therefore stops pulling, and whatever the
 * handler buffers (the watcher's bounded queue) decides what happens next. The handler's end
 * becomes OK; its error becomes the status, through the one error mapping.
 */
function serverStreamingHandler(
  mounted: MountedService,
  method: DescMethod,
  log: Logger,
): grpc.handleServerStreamingCall<unknown, unknown> {
  const impl = (mounted.impl as Record<string, ServerStreaming | undefined>)[method.localName];
  const where = `${mounted.service.typeName}/${method.name}`;
  return (call) => {
    const req = call.request;
    if (req instanceof UndecodableRequest) {
      call.emit('error', {
        code: grpc.status.INVALID_ARGUMENT,
        details: `request is not a valid ${method.input.typeName}: ${req.reason}`,
      });
      return;
    }
    if (!impl) {
      call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `${method.name} is not implemented` });
      return;
    }
    const ctx = new GrpcCallContext(mounted, method, call);
    // The signal exists before the handler runs, so a cancelled call ends a handler waiting for data.
    void ctx.signal;
    void (async () => {
      let it: AsyncIterator<unknown> | undefined;
      let finished = false;
      try {
        it = impl(req, ctx)[Symbol.asyncIterator]();
        for (;;) {
          const next = await it.next();
          if (next.done) {
            finished = true;
            break;
          }
          if (call.cancelled) break;
          if (!call.write(next.value)) await writable(call);
          if (call.cancelled) break;
        }
        ctx.settle();
        if (!call.cancelled) call.end();
      } catch (err) {
        finished = true;
        ctx.settle();
        if (!call.cancelled) call.emit('error', statusOf(err, log, where));
      } finally {
        if (!finished) await it?.return?.(undefined).catch(() => undefined);
      }
    })();
  };
}

function serializer(schema: DescMessage) {
  const flat = flatEncoder(schema);
  return (msg: unknown) => {
    if (flat && typeof msg === 'object' && msg !== null) {
      const bytes = flat(msg as Record<string, unknown>);
      if (bytes) return bytes;
    }
    // A view, not a copy: toBinary returns a fresh array that nothing else holds.
    const bytes = toBinary(schema, create(schema, msg as never));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * A stream message serializer that encodes each message object once: a handler that yields the
 * same object to many streams (WatchExpiry fan-out) pays for one encoding. Messages are not
 * changed after they were yielded, so the cached bytes stay right.
 */
function sharedSerializer(schema: DescMessage) {
  const encode = serializer(schema);
  const cache = new WeakMap<object, Buffer>();
  return (msg: unknown) => {
    if (typeof msg !== 'object' || msg === null) return encode(msg);
    let bytes = cache.get(msg);
    if (!bytes) {
      bytes = encode(msg);
      cache.set(msg, bytes);
    }
    return bytes;
  };
}

function deserializer(schema: DescMessage) {
  const flat = flatDecoder(schema);
  return (bytes: Buffer) => {
    try {
      return flat?.(bytes) ?? fromBinary(schema, bytes);
    } catch (e) {
      return new UndecodableRequest(e instanceof Error ? e.message : 'decode error');
    }
  };
}

/**
 * How often the server pings a connection (HTTP/2 PING) and how long it waits for the answer
 * before dropping it: a peer that vanished without closing (a crashed host, a dropped NAT entry)
 * stops holding its WatchExpiry streams and its connection slot within a few minutes, instead of
 * until TCP gives up on retransmissions. The cost is one ping per connection every two minutes.
 * grpc-js has no server-side policy on the client's own pings (gRPC core's
 * min_recv_ping_interval); a ping flood is bounded by nghttp2's flood protection.
 */
const KEEPALIVE_TIME_MS = 120_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;

/**
 * Mounts Connect service implementations on a @grpc/grpc-js server, so the same handlers serve
 * the gRPC port (the hot path: plain grpc-js is several times faster than connect-node's gRPC
 * handler; docs/design.md, "Two ports, one set of handlers"). Unary and server-streaming
 * methods; `tracker` counts unary calls in flight for shutdown. `limits` sets the per-connection
 * limits grpc-js applies itself (idle timeout, maximum age and its grace, concurrent streams);
 * listenGrpc applies the others. With `access`, every call on the server (grpc.health.v1 and
 * reflection included, whoever adds them) writes an access line (src/api/grpc-access-log.ts).
 */
export function createGrpcServer(
  services: MountedService[],
  log: Logger,
  limits: Pick<
    GrpcConnectionLimits,
    'idleTimeoutMs' | 'maxConnectionAgeMs' | 'maxConnectionAgeGraceMs' | 'maxConcurrentStreams'
  >,
  tracker = new CallTracker(),
  access?: AccessLog,
): grpc.Server {
  // Only options grpc-js 1.14's Server reads (server.js constructor); client-side channel options
  // such as grpc.keepalive_permit_without_calls would be ignored here.
  const options: grpc.ServerOptions = {
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    'grpc.max_connection_age_ms': limits.maxConnectionAgeMs,
    'grpc.max_connection_age_grace_ms': limits.maxConnectionAgeGraceMs,
    'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    // Rotor serves no channelz service, so grpc-js's per-call and per-connection channelz
    // bookkeeping (on by default) would only cost: about 7 % of a no-op call's CPU (bench/README.md).
    'grpc.enable_channelz': 0,
  };
  // A request message that does not decompress is INVALID_ARGUMENT, not grpc-js's INTERNAL.
  installDecompressionStatus();
  const server = access ? new AccessLoggedServer(options, access) : new grpc.Server(options);
  for (const mounted of services) {
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of mounted.service.methods) {
      if (method.methodKind !== 'unary' && method.methodKind !== 'server_streaming') continue;
      const streaming = method.methodKind === 'server_streaming';
      definition[method.name] = {
        path: `/${mounted.service.typeName}/${method.name}`,
        requestStream: false,
        responseStream: streaming,
        requestSerialize: serializer(method.input),
        requestDeserialize: deserializer(method.input),
        responseSerialize: streaming ? sharedSerializer(method.output) : serializer(method.output),
        responseDeserialize: deserializer(method.output),
        originalName: method.localName,
      };
      handlers[method.name] = streaming
        ? serverStreamingHandler(mounted, method, log)
        : unaryHandler(mounted, method, log, tracker);
    }
    server.addService(definition, handlers);
  }
  return server;
}
