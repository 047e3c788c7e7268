import type { Code, ConnectError } from '@connectrpc/connect';
import type { CallMeta } from '../app/context.js';
import type { DpopRequest } from '../app/dpop.js';
import type { Logger } from '../app/logger-port.js';
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
    /** Matches REQUEST_ID or is a UUID (AccessLog.begin makes every record), so it is JSON-safe. */
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
 * Writes one access line (`"msg":"access"`, level `info`) whose fields are `members`: the JSON
 * members of the line, in order, without braces (`"transport":"grpc","rpc":…`). The access log
 * builds them itself from its fixed fields (AccessLog.write), so the hot path pays no generic
 * serialisation (bench/README.md, "Per-call cost").
 */
export interface AccessLineWriter {
  accessLine(members: string): void;
}

/** An access-line writer over any logger: an `info` line `access` with the same fields. */
export function accessLineWriter(log: Logger): AccessLineWriter {
  const own = (log as Partial<AccessLineWriter>).accessLine;
  return own ? { accessLine: own } : { accessLine: (members) => log.info('access', JSON.parse(`{${members}}`)) };
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

/** Cached line heads per transport: the RPCs and routes a server has are a few dozen at most. */
const MAX_CACHED_HEADS = 256;

/** Where the access lines go, and how records are started. Only built when the access log is on. */
export class AccessLog {
  /** `"transport":…,"rpc":…` of each RPC, and `,"code":…` of each code label, each made once. */
  private readonly rpcHeads = { grpc: new Map<string, string>(), http: new Map<string, string>() };
  private readonly codeFields = new Map<string, string>();
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
    // Built by hand, in a fixed order; every string goes through JSON.stringify (once per RPC and
    // per code for the cached parts), so no value can break out of its field whatever it holds.
    let line =
      httpMethod === undefined
        ? this.rpcHead(transport, rec.target)
        : `"transport":"${transport}","route":${json(rec.target)},"http_method":${json(httpMethod)}`;
    line += `,"status":${status}`;
    if (rec.code !== undefined) line += this.codeField(rec.code);
    if (rec.rotorError !== undefined) line += `,"rotor_error":${json(rec.rotorError)}`;
    line += `,"duration_ms":${millis(Math.round((performance.now() - rec.started) * 1000))}`;
    // The request id is JSON as it is: begin() took it only if it matched REQUEST_ID, else made a UUID.
    line += `,"peer":${json(rec.peer)},"request_id":"${rec.requestId}"`;
    if (rec.traceparent !== undefined) line += `,"traceparent":${json(rec.traceparent)}`;
    if (rec.tokenId !== undefined) line += `,"token_id":${json(rec.tokenId)}`;
    this.sink.accessLine(line);
  }

  private rpcHead(transport: 'grpc' | 'http', target: string): string {
    const heads = this.rpcHeads[transport];
    let head = heads.get(target);
    if (head === undefined) {
      head = `"transport":"${transport}","rpc":${json(target)}`;
      if (heads.size < MAX_CACHED_HEADS) heads.set(target, head);
    }
    return head;
  }

  private codeField(code: string): string {
    let field = this.codeFields.get(code);
    if (field === undefined) {
      field = `,"code":${json(code)}`;
      if (this.codeFields.size < MAX_CACHED_HEADS) this.codeFields.set(code, field);
    }
    return field;
  }
}
