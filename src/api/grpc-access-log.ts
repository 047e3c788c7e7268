import { sensitiveHeaders, type OutgoingHttpHeaders } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import type { AccessLog, AccessRecord } from './access-log.js';

/** Where the access record of a call served on the gRPC port hangs on grpc-js's call object. */
const RECORD = Symbol('rotor access record');

type AnyCall = { metadata: grpc.Metadata; getPeer(): string; sendMetadata(md: grpc.Metadata): void };
type UnaryCallback = (
  err: (Partial<grpc.StatusObject> & { metadata?: grpc.Metadata }) | null,
  value?: unknown,
  trailer?: grpc.Metadata,
  flags?: number,
) => void;
type Handler = (call: AnyCall, callback?: UnaryCallback) => void;

/** The access record of a call the access log wraps; undefined when it is off. */
export function accessRecordOf(call: object): AccessRecord | undefined {
  return (call as { [RECORD]?: AccessRecord })[RECORD];
}

function first(md: grpc.Metadata, key: string): unknown {
  return md.get(key)[0];
}

function begin(call: AnyCall, target: string, access: AccessLog): AccessRecord {
  const md = call.metadata;
  const auth = first(md, 'authorization');
  const rec = access.begin(
    typeof auth === 'string' ? auth : undefined,
    call.getPeer(),
    first(md, 'x-request-id'),
    first(md, 'traceparent'),
  );
  rec.target = target;
  (call as { [RECORD]?: AccessRecord })[RECORD] = rec;
  return rec;
}

/**
 * The response headers carrying a call's request id. The value goes into the metadata without
 * Metadata.set's checks of the key and value against gRPC's character rules, a per-call cost
 * (bench/README.md, "Tenth session"): the key is this literal, and the value passed stricter rules
 * already (AccessLog.begin takes a caller's id only if it matches REQUEST_ID, else makes a UUID).
 * Every other Metadata method sees an ordinary entry.
 */
class RequestIdHeader extends grpc.Metadata {
  constructor(private readonly requestId: string) {
    super();
    this.internalRepr.set('x-request-id', [requestId]);
  }

  /**
   * What grpc-js puts in the response headers. The id is marked never-indexed for HPACK
   * (`http2.sensitiveHeaders`): a value new on every call would otherwise go into both ends'
   * dynamic tables and push out the headers every response repeats.
   */
  override toHttp2Headers(): OutgoingHttpHeaders {
    return { 'x-request-id': this.requestId, [sensitiveHeaders]: NEVER_INDEXED } as OutgoingHttpHeaders;
  }
}

const NEVER_INDEXED = ['x-request-id'];

function requestIdHeader(rec: AccessRecord): grpc.Metadata {
  return new RequestIdHeader(rec.requestId);
}

function unary(path: string, handler: Handler, access: AccessLog): Handler {
  // One string for every call of the method: the access log's lookups by it hash it once.
  const target = path.slice(1);
  return (call, callback) => {
    const rec = begin(call, target, access);
    handler(call, (err, value, trailer, flags) => {
      let code = grpc.status.OK;
      if (err) {
        code = err.code ?? grpc.status.UNKNOWN;
        // An error before any message is a trailers-only answer: the request id goes with it.
        err.metadata ??= new grpc.Metadata();
        err.metadata.set('x-request-id', rec.requestId);
        const rotorError = err.metadata.get('rotor-error')[0];
        if (typeof rotorError === 'string') rec.rotorError = rotorError;
      } else {
        call.sendMetadata(requestIdHeader(rec));
      }
      callback!(err, value, trailer, flags);
      rec.ended(code);
      access.write(rec, 'grpc', code);
    });
  };
}

function streaming(path: string, handler: Handler, access: AccessLog): Handler {
  const target = path.slice(1);
  return (call, callback) => {
    const rec = begin(call, target, access);
    const emitter = call as unknown as NodeJS.EventEmitter;
    let failed: number | undefined;
    let logged = false;
    const end = (code: number) => {
      if (logged) return;
      logged = true;
      rec.ended(code);
      access.write(rec, 'grpc', code);
    };
    // grpc-js turns an emitted 'error' (a status object) into the call's status, then ends it.
    emitter.on('error', (e: Partial<grpc.StatusObject>) => {
      failed ??= e.code ?? grpc.status.UNKNOWN;
      const rotorError = e.metadata?.get('rotor-error')[0];
      if (typeof rotorError === 'string') rec.rotorError = rotorError;
    });
    emitter.once('finish', () => end(failed ?? grpc.status.OK));
    // Emitted on every close: it only counts for a call that had not finished.
    emitter.once('cancelled', () => end(failed ?? grpc.status.CANCELLED));
    call.sendMetadata(requestIdHeader(rec));
    handler(call, callback);
  };
}

/**
 * `implementation` with every handler writing its access line: the method, its gRPC status (and
 * the Rotor error code), the duration, the peer, the request id (returned in the response headers
 * as `x-request-id`), the `traceparent` and the id of the token that authenticated the call.
 * Handlers of grpc-js's own services (health, reflection) are wrapped the same way as Rotor's.
 */
export function withAccessLog(
  service: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  access: AccessLog,
): grpc.UntypedServiceImplementation {
  const impl = implementation as unknown as Record<string, Handler | undefined>;
  const wrapped: Record<string, Handler> = {};
  for (const [name, def] of Object.entries(service)) {
    const key = impl[name] ? name : def.originalName;
    const handler = key === undefined ? undefined : impl[key];
    if (!handler || key === undefined) continue;
    wrapped[key] =
      def.requestStream || def.responseStream ? streaming(def.path, handler, access) : unary(def.path, handler, access);
  }
  return { ...implementation, ...wrapped } as unknown as grpc.UntypedServiceImplementation;
}

/** A grpc-js server whose every service (Rotor's, health, reflection) writes access lines. */
export class AccessLoggedServer extends grpc.Server {
  constructor(
    options: grpc.ServerOptions,
    private readonly access: AccessLog,
  ) {
    super(options);
  }

  override addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    super.addService(service, withAccessLog(service, implementation, this.access));
  }
}
