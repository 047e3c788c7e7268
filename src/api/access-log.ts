import type { Code, ConnectError } from '@connectrpc/connect';
import type { CallMeta } from '../app/context.js';
import type { DpopRequest } from '../app/dpop.js';
import type { Logger } from '../app/logger-port.js';
import { JsonLineBytes } from './json-line-bytes.js';
import { RequestIds } from './request-ids.js';
import { codeLabel } from './rpc-stats.js';

/**
 * The access log (README, "Access log"): one `access` line per call on the gRPC port, per RPC on
 * the HTTP port and per request of its other routes. Each line says which method or route, how it
 * ended, how long it took, who called (peer, and the id of the token that authenticated the call),
 * and the request id and W3C trace context that tie it to the caller's own logs. It never carries
 * a header or body value other than those two ids (so no credential, idempotency key, JWT or
 * proof), and both ids are checked against a strict shape before they are written.
 */

/** A request id the caller may choose (`x-request-id`): short and plain, else a fresh one is made. */
const REQUEST_ID = /^[A-Za-z0-9._:/+=@-]{1,128}$/;

/** W3C Trace Context `traceparent` (version 00 and later versions' first four fields). */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[0-9a-f-]{0,200})?$/;

/**
 * One call being served: the call facts the handlers read (it is the call's CallMeta, so
 * `authenticate` writes the token id straight into it), and what the access line will say.
 */
export class AccessRecord implements CallMeta {
  tokenId: string | undefined = undefined;
  /** The DPoP proof sent with the call (docs/dpop.md), set by the transport; never logged. */
  dpop: DpopRequest | undefined = undefined;
  /** `ok`, or Connect's name of the code the call failed with (`unauthenticated`, …); set when known. */
  code: string | undefined = undefined;
  /** The Rotor error code of a failure (`reuse_detected`, …: the `rotor-error` metadata). */
  rotorError: string | undefined = undefined;
  /** The RPC (`rotor.v1.TokenService/RotateToken`) or the HTTP route (`/oauth/token`, `other`). */
  target = '';
  readonly started = performance.now();

  constructor(
    readonly authorization: string | undefined,
    readonly peer: string | null,
    /** Matches REQUEST_ID or is a UUID (AccessLog.begin makes every record): a valid header value as it is. */
    readonly requestId: string,
    readonly traceparent: string | undefined,
  ) {}

  /** The call failed with `error` (after the one mapping). */
  failed(error: ConnectError): void {
    this.code = codeLabel(error.code);
    this.rotorError = error.metadata.get('rotor-error') ?? undefined;
  }

  /** The call ended with Connect/gRPC `code` (the same numbers; 0: ok), unless a failure was recorded already. */
  ended(code: number): void {
    this.code ??= codeLabel(code as Code | 0);
  }
}

/**
 * Where access lines go (`"msg":"access"`, level `info`). The writer owns the line's envelope
 * (level, time, msg) and where lines end up; the access log writes the members between, from its
 * fixed fields, as bytes (JsonLineBytes), so the hot path builds no strings and pays no generic
 * serialisation (bench/README.md, "Per-call cost" and "Eleventh session").
 */
export interface AccessLineWriter {
  /**
   * Starts a line and returns the bytes its members go into (`"transport":"grpc",…`, without
   * braces), or undefined when access lines are not written. A line started and not closed is
   * dropped by the next start.
   */
  openAccessLine(): JsonLineBytes | undefined;
  /** Ends the line started last and sends it on. */
  closeAccessLine(): void;
}

/** An access-line writer over any logger: an `info` line `access` with the same fields. */
export function accessLineWriter(log: Logger): AccessLineWriter {
  const own = log as Partial<AccessLineWriter>;
  if (own.openAccessLine && own.closeAccessLine)
    return { openAccessLine: own.openAccessLine.bind(log), closeAccessLine: own.closeAccessLine.bind(log) };
  const bytes = new JsonLineBytes(1024);
  return {
    openAccessLine: () => {
      bytes.truncate(0);
      return bytes;
    },
    closeAccessLine: () => log.info('access', JSON.parse(`{${bytes.take().toString('utf8')}}`)),
  };
}

const json = JSON.stringify;

/**
 * Whole microseconds as a JSON number of milliseconds (`1234` → `1.234`, `50` → `0.050`), from
 * integers: formatting a fractional double cost more than the rest of the line.
 */
export function millis(us: number): string {
  const whole = Math.floor(us / 1000);
  const frac = us - whole * 1000;
  if (frac === 0) return `${whole}`;
  return frac < 10 ? `${whole}.00${frac}` : frac < 100 ? `${whole}.0${frac}` : `${whole}.${frac}`;
}

/** Cached line parts: the RPCs, routes and codes a server has are a few dozen at most. */
const MAX_CACHED_PARTS = 256;

const bytesOf = (text: string) => Buffer.from(text, 'utf8');
const HTTP_METHOD = bytesOf(',"http_method":');
const STATUS = bytesOf(',"status":');
const ROTOR_ERROR = bytesOf(',"rotor_error":');
const DURATION = bytesOf(',"duration_ms":');
const PEER = bytesOf(',"peer":');
const NULL_PEER = bytesOf(',"peer":null');
const REQUEST_ID_FIELD = bytesOf(',"request_id":');
const TRACEPARENT_FIELD = bytesOf(',"traceparent":');
const TOKEN_ID = bytesOf(',"token_id":');

/** Where the access lines go, and how records are started. Only built when the access log is on. */
export class AccessLog {
  /**
   * `"transport":…,"rpc":…` of each RPC per port, `"transport":"http","route":…` of each HTTP
   * route, and `,"code":…` of each code label: bytes made once.
   */
  private readonly heads = {
    grpc: new Map<string, Buffer>(),
    http: new Map<string, Buffer>(),
    route: new Map<string, Buffer>(),
  };
  private readonly codeFields = new Map<string, Buffer>();
  private readonly ids = new RequestIds();

  constructor(private readonly sink: AccessLineWriter) {}

  /** A record for a call that sent these header values (each may be absent or malformed). */
  begin(
    authorization: string | undefined,
    peer: string | null,
    requestId: unknown,
    traceparent: unknown,
  ): AccessRecord {
    return new AccessRecord(
      authorization,
      peer,
      typeof requestId === 'string' && REQUEST_ID.test(requestId) ? requestId : this.ids.next(),
      typeof traceparent === 'string' && TRACEPARENT.test(traceparent) ? traceparent : undefined,
    );
  }

  /**
   * Writes the line of a finished call: `transport` `grpc` (the gRPC port) or `http` (the HTTP
   * port); `status` the gRPC status number on the gRPC port, the HTTP status on the HTTP port;
   * `httpMethod` for the HTTP port's routes.
   */
  write(rec: AccessRecord, transport: 'grpc' | 'http', status: number, httpMethod?: string): void {
    const line = this.sink.openAccessLine();
    if (line === undefined) return;
    // In a fixed order; every value is written as a JSON string (JsonLineBytes.string escapes as
    // JSON.stringify does), so no value can break out of its field whatever it holds.
    if (httpMethod === undefined) line.raw(this.head(transport, rec.target));
    else {
      line.raw(this.head('route', rec.target));
      line.raw(HTTP_METHOD);
      line.string(httpMethod);
    }
    line.raw(STATUS);
    line.uint(status);
    if (rec.code !== undefined) line.raw(this.codeField(rec.code));
    if (rec.rotorError !== undefined) {
      line.raw(ROTOR_ERROR);
      line.string(rec.rotorError);
    }
    line.raw(DURATION);
    line.utf8(millis(Math.round((performance.now() - rec.started) * 1000)));
    if (rec.peer === null) line.raw(NULL_PEER);
    else {
      line.raw(PEER);
      line.string(rec.peer);
    }
    line.raw(REQUEST_ID_FIELD);
    line.string(rec.requestId);
    if (rec.traceparent !== undefined) {
      line.raw(TRACEPARENT_FIELD);
      line.string(rec.traceparent);
    }
    if (rec.tokenId !== undefined) {
      line.raw(TOKEN_ID);
      line.string(rec.tokenId);
    }
    this.sink.closeAccessLine();
  }

  private head(kind: 'grpc' | 'http' | 'route', target: string): Buffer {
    const heads = this.heads[kind];
    let head = heads.get(target);
    if (head === undefined) {
      head = bytesOf(
        kind === 'route' ? `"transport":"http","route":${json(target)}` : `"transport":"${kind}","rpc":${json(target)}`,
      );
      if (heads.size < MAX_CACHED_PARTS) heads.set(target, head);
    }
    return head;
  }

  private codeField(code: string): Buffer {
    let field = this.codeFields.get(code);
    if (field === undefined) {
      field = bytesOf(`,"code":${json(code)}`);
      if (this.codeFields.size < MAX_CACHED_PARTS) this.codeFields.set(code, field);
    }
    return field;
  }
}
