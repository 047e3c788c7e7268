/**
 * The harness of the bad-input files (test/e2e/bad-input/, one file per section of
 * docs/bad-input.md): the server and its fixtures, the senders for each port, and the builders
 * of table cases. Running a table and checking it against the docs is suite.ts.
 */
import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import type { DescService } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { formatSecret } from '../../../src/domain/token-secret.js';
import { GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN } from '../../../src/domain/token-exchange.js';
import { TokenExchangeService } from '../../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind } from '../../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../../support/connect-client.js';
import type { Engine } from '../../support/engines.js';
import { grpcClient, grpcRaw } from '../../support/grpc-client.js';
import { rawGrpcCall } from '../../support/raw-grpc.js';
import { inMs, startTestServer, type TestServer } from '../../support/server.js';

export const DAY = 86_400_000;
export const MAX_LIFETIME_SECONDS = 365 * 86_400;
export const ACCESS = TOKEN_TYPE_ACCESS_TOKEN;

// ---------------------------------------------------------------------------------------------
// Fixtures: tokens in every state, created once against the real server.

export interface Issued {
  id: string;
  secret: string;
}

export interface Fixtures {
  admin: string;
  /** project token with read, write, rotor:rotate and audience https://api.example; failing calls never consume it. */
  live: Issued;
  expired: Issued;
  revoked: Issued;
  /** The successor of a rotated token whose family reuse detection revoked (the predecessor was presented again). */
  reused: Issued;
  /** A token whose family was revoked with RevokeFamily. */
  familyRevoked: Issued;
  /** Well-formed, valid checksum, never issued. */
  unknown: string;
  malformed: string;
  /** `live` with its last character changed. */
  badChecksum: string;
}

/**
 * The server of the running file and its fixtures, set by startBadInputServer. Live bindings: the
 * senders and the case tables of the section files read them when a case runs, not when the table
 * is built.
 */
export let s: TestServer;
export let f: Fixtures;

/**
 * Starts a server on `engine` and creates the fixtures: a live, an expired and a revoked token, a
 * token of a family revoked for reuse and one of a family revoked by RevokeFamily.
 */
export async function startBadInputServer(engine: Engine): Promise<void> {
  s = await startTestServer({}, { engine });
  const g = grpcClient(TokenService, s.grpcAddress);
  const create = async (ownerId: string, ms: number): Promise<Issued> => {
    const r = (await g.call(
      'createToken',
      // An audience, so that asking for another one widens (a token without any is unrestricted).
      {
        kind: TokenKind.PROJECT,
        ownerId,
        name: ownerId,
        scopes: ['read', 'write', 'rotor:rotate'],
        audiences: ['https://api.example'],
        expiresAt: inMs(s.clock.now(), ms),
      },
      { token: s.adminSecret },
    )) as { token: { id: string }; secret: string };
    return { id: r.token.id, secret: r.secret };
  };
  const live = await create('bad-input', 7 * DAY);
  const expired = await create('bad-input-expired', 60_000);
  const revoked = await create('bad-input-revoked', DAY);
  await g.call('revokeToken', { id: revoked.id }, { token: s.adminSecret });
  const familyRevoked = await create('bad-input-family-revoked', DAY);
  const { token: family } = (await g.call('getToken', { id: familyRevoked.id }, { token: s.adminSecret })) as {
    token: { familyId: string };
  };
  await g.call('revokeFamily', { familyId: family.familyId }, { token: s.adminSecret });
  const predecessor = await create('bad-input-reused', DAY);
  const rotated = (await g.call('rotateToken', {}, { token: predecessor.secret })) as {
    token: { id: string };
    secret: string;
  };
  const reused = { id: rotated.token.id, secret: rotated.secret };
  s.clock.advance(120_000);
  // Past the reuse grace: presenting the predecessor again revokes its family, the successor too.
  await g.call('rotateToken', {}, { token: predecessor.secret }).then(
    () => {
      throw new Error('presenting a rotated predecessor after the grace must be refused as reuse');
    },
    () => undefined,
  );
  g.close();
  const last = live.secret.slice(-1);
  f = {
    admin: s.adminSecret,
    live,
    expired,
    revoked,
    reused,
    familyRevoked,
    unknown: formatSecret('project', (n) => new Uint8Array(randomBytes(n))),
    malformed: 'rtr_prj_this-is-not-a-token',
    badChecksum: live.secret.slice(0, -1) + (last === 'A' ? 'B' : 'A'),
  };
}

/** Closes the clients of the senders and stops the server. */
export async function stopBadInputServer(): Promise<void> {
  for (const c of grpcClients.values()) c.close();
  grpcClients.clear();
  await s?.stop();
}

// ---------------------------------------------------------------------------------------------
// The table.

/** What a unary call answered: a gRPC status / Connect code (same numbers) and its message. */
export interface RpcAnswer {
  code: number;
  message: string;
  response?: unknown;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

export interface RpcExpect {
  /** gRPC status / Connect code; the two enums share their numbers. */
  code: number;
  /** A fragment of the message (string: substring); '' for OK answers. */
  message: string;
  /** Extra check on a successful response. */
  response?: (r: Record<string, unknown>) => void;
  responseDoc?: string;
}

export interface HttpExpect {
  status: number;
  /** RFC 6749 §5.2 `error`; undefined when the answer has no body (RFC 7009 200). */
  error?: string;
  /** Fragment of `error_description`. */
  description?: string;
  /** A header that must be present, and a fragment of its value. */
  header?: [name: string, fragment: string];
  /** Exact body, for answers that are not OAuth errors. */
  body?: string;
  json?: Record<string, unknown>;
}

export type RpcSend = () => Promise<RpcAnswer>;
export type HttpSend = () => Promise<HttpAnswer>;

export interface Case {
  /** The input, as it appears in docs/bad-input.md. */
  name: string;
  grpc?: { send: RpcSend; expect: RpcExpect };
  connect?: { send: RpcSend; expect: RpcExpect; via?: string };
  http?: { send: HttpSend; expect: HttpExpect; via: string };
  /** Set when the case documents a known bug; the test is then `it.fails`. */
  fails?: string;
}

// ---- senders ----

const grpcClients = new Map<DescService, ReturnType<typeof grpcClient>>();

export function onGrpc(
  service: DescService,
  method: string,
  request: () => object,
  token?: () => string | undefined,
): RpcSend {
  return async () => {
    let c = grpcClients.get(service);
    if (!c) {
      c = grpcClient(service, s.grpcAddress);
      grpcClients.set(service, c);
    }
    const t = token?.();
    try {
      const response = await c.call(method, request() as never, t === undefined ? {} : { token: t });
      return { code: grpc.status.OK, message: '', response };
    } catch (e) {
      const err = e as grpc.ServiceError;
      return { code: err.code, message: err.details };
    }
  };
}

export function onConnect(
  service: DescService,
  method: string,
  request: () => object,
  token?: () => string | undefined,
  binary = false,
): RpcSend {
  return async () => {
    const client = connectClient(service, s.httpUrl, token?.(), { binary }) as unknown as Record<
      string,
      (r: unknown) => Promise<unknown>
    >;
    try {
      const response = await client[method]!(request());
      return { code: 0, message: '', response };
    } catch (e) {
      const err = ConnectError.from(e);
      return { code: err.code, message: err.rawMessage };
    }
  };
}

/** Both ports, same request: gRPC via grpc-js on the gRPC port, Connect JSON on the HTTP port. */
export function rpc(
  service: DescService,
  method: string,
  request: () => object,
  token: (() => string | undefined) | undefined,
  grpcExpect: RpcExpect,
  connectExpect: RpcExpect = grpcExpect,
): Pick<Case, 'grpc' | 'connect'> {
  return {
    grpc: { send: onGrpc(service, method, request, token), expect: grpcExpect },
    connect: { send: onConnect(service, method, request, token), expect: connectExpect },
  };
}

async function httpAnswer(res: Response): Promise<HttpAnswer> {
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A raw HTTP request to the HTTP port; a transport failure is answered as status 0. */
export function onHttp(
  path: string,
  init: () => { method?: string; contentType?: string; bearer?: string; body?: string | Uint8Array },
): HttpSend {
  return async () => {
    const i = init();
    const headers: Record<string, string> = {};
    if (i.contentType !== undefined) headers['content-type'] = i.contentType;
    if (i.bearer !== undefined) headers.authorization = `Bearer ${i.bearer}`;
    try {
      return await httpAnswer(
        await fetch(`${s.httpUrl}${path}`, {
          method: i.method ?? 'POST',
          headers,
          body: i.body,
          signal: AbortSignal.timeout(5000),
        }),
      );
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      return {
        status: 0,
        headers: new Headers(),
        text: `fetch failed: ${cause?.code ?? cause?.message ?? String(e)}`,
        json: undefined,
      };
    }
  };
}

export const FORM = 'application/x-www-form-urlencoded';

export function formBody(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

/** snake_case connect error codes on the wire ("invalid_argument") → Code. */
function connectCodeOf(name: unknown): number {
  const found = Object.entries(Code).find(
    ([k, v]) => typeof v === 'number' && k.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase() === name,
  );
  return found ? (found[1] as number) : -1;
}

/** A raw unary Connect request (any content type) to the HTTP port. */
export function onConnectRaw(path: string, contentType: string, body: () => string | Uint8Array): RpcSend {
  return async () => {
    const res = await fetch(`${s.httpUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': contentType },
      body: body(),
    });
    const a = await httpAnswer(res);
    if (res.status === 200) return { code: 0, message: '' };
    if (!a.json) return { code: -1, message: `HTTP ${res.status}: ${a.text.slice(0, 200)}` };
    return { code: connectCodeOf(a.json.code), message: String(a.json.message ?? '') };
  };
}

/**
 * A raw Connect streaming request (`application/connect+proto` or `+json`) with one enveloped
 * message (`flags`: its envelope flags, 0x01 = compressed); the status comes from the end-stream message (flag 0x02), or from a JSON error body
 * when the call is refused before the stream starts. Messages before the end are skipped.
 */
export function onConnectStreamRaw(path: string, contentType: string, payload: () => Uint8Array, flags = 0): RpcSend {
  return async () => {
    const p = payload();
    const env = Buffer.alloc(5 + p.length);
    env.writeUInt8(flags, 0);
    env.writeUInt32BE(p.length, 1);
    env.set(p, 5);
    const res = await fetch(`${s.httpUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': contentType, authorization: `Bearer ${f.admin}` },
      body: env,
    });
    const body = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) {
      const a = JSON.parse(body.toString('utf8')) as { code?: unknown; message?: unknown };
      return { code: connectCodeOf(a.code), message: String(a.message ?? '') };
    }
    for (let off = 0; off + 5 <= body.length; ) {
      const len = body.readUInt32BE(off + 1);
      if (body[off] === 0x02) {
        const end = JSON.parse(body.subarray(off + 5, off + 5 + len).toString('utf8')) as {
          error?: { code?: unknown; message?: unknown };
        };
        if (end.error === undefined) return { code: 0, message: '' };
        return { code: connectCodeOf(end.error.code), message: String(end.error.message ?? '') };
      }
      off += 5 + len;
    }
    return { code: -1, message: 'no end-stream message' };
  };
}

/** A raw gRPC-Web request: one enveloped message; the status comes from headers or the trailer frame. */
export function onGrpcWebRaw(path: string, payload: () => Uint8Array): RpcSend {
  return async () => {
    const p = payload();
    const env = Buffer.alloc(5 + p.length);
    env.writeUInt32BE(p.length, 1);
    env.set(p, 5);
    const res = await fetch(`${s.httpUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
      body: env,
    });
    const body = Buffer.from(await res.arrayBuffer());
    let status = res.headers.get('grpc-status');
    let message = res.headers.get('grpc-message');
    for (let off = 0; off + 5 <= body.length; ) {
      const len = body.readUInt32BE(off + 1);
      if ((body[off]! & 0x80) === 0x80) {
        for (const line of body
          .subarray(off + 5, off + 5 + len)
          .toString('utf8')
          .split(/\r?\n/)) {
          const m = /^([^:]+):\s*(.*)$/.exec(line);
          if (m?.[1]?.toLowerCase() === 'grpc-status') status = m[2]!;
          if (m?.[1]?.toLowerCase() === 'grpc-message') message = m[2]!;
        }
      }
      off += 5 + len;
    }
    if (res.status !== 200) return { code: -1, message: `HTTP ${res.status}` };
    return {
      code: status === null ? -1 : Number(status),
      message: message === null ? '' : decodeURIComponent(message),
    };
  };
}

export function onGrpcRaw(path: string, payload: () => Buffer): RpcSend {
  return async () => {
    const r = await grpcRaw(s.grpcAddress, path, payload());
    return { code: r.code, message: r.details };
  };
}

/**
 * One gRPC frame sent as is over raw HTTP/2 to the gRPC port (the compressed flag, the length
 * and the payload `frame` says), with a `grpc-encoding` header when `encoding` is given: what a
 * grpc-js client cannot be made to send. The status comes from the headers or the trailers.
 */
export function onGrpcFrame(path: string, encoding: string | undefined, frame: () => Buffer): RpcSend {
  return async () => {
    const session = http2.connect(`http://${s.grpcAddress}`);
    try {
      const r = await Promise.race([
        rawGrpcCall(session, path, frame(), encoding === undefined ? {} : { encoding }),
        new Promise<never>((_, reject) => session.once('error', reject)),
      ]);
      if (r.status === undefined) throw new Error(`${path}: no grpc-status`);
      return { code: r.status, message: r.message };
    } finally {
      session.close();
    }
  };
}

// ---- the RFC 8693 exchange on all three: ExchangeToken (gRPC, Connect) and POST /oauth/token ----

/** RFC 8693 parameters; an array is a repeated parameter (only `audience` and `resource` may repeat). */
export type ExchangeForm = Record<string, string | string[]>;

function exchangeParams(overrides: () => ExchangeForm): () => ExchangeForm {
  return () => {
    const params: ExchangeForm = {
      grant_type: GRANT_TOKEN_EXCHANGE,
      subject_token: f.live.secret,
      subject_token_type: ACCESS,
      ...overrides(),
    };
    for (const [k, v] of Object.entries(params)) if (v === '') delete params[k];
    return params;
  };
}

/** Form parameters as an ExchangeTokenRequest init; `audience` and `resource` are repeated fields. */
function camelRequest(params: ExchangeForm): object {
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [
      k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
      (k === 'audience' || k === 'resource') && typeof v === 'string' ? [v] : v,
    ]),
  );
}

/** A form body with repeated parameters for array values. */
function exchangeFormBody(params: ExchangeForm): string {
  return new URLSearchParams(
    Object.entries(params).flatMap(([k, v]): [string, string][] =>
      typeof v === 'string' ? [[k, v]] : v.map((x) => [k, x]),
    ),
  ).toString();
}

/** One exchange case on the three endpoints. `overrides` sets RFC 8693 parameters ('' removes one). */
export function exchange(
  name: string,
  overrides: () => ExchangeForm,
  rpcExpect: RpcExpect,
  httpExpect: HttpExpect,
): Case {
  const params = exchangeParams(overrides);
  return {
    name,
    ...rpc(TokenExchangeService, 'exchangeToken', () => camelRequest(params()), undefined, rpcExpect),
    http: {
      via: 'POST /oauth/token',
      send: onHttp('/oauth/token', () => ({ contentType: FORM, body: exchangeFormBody(params()) })),
      expect: httpExpect,
    },
  };
}

export const invalidArgument = (message: string): RpcExpect => ({ code: grpc.status.INVALID_ARGUMENT, message });
export const unauthenticated = (message: string): RpcExpect => ({ code: grpc.status.UNAUTHENTICATED, message });
export const invalidRequest = (description: string): HttpExpect => ({
  status: 400,
  error: 'invalid_request',
  description,
});
/** An exchange refused as INVALID_ARGUMENT on the RPC ports and invalid_request on /oauth/token, with one message. */
export const invalidExchange = (name: string, overrides: () => ExchangeForm, message: string): Case =>
  exchange(name, overrides, invalidArgument(message), invalidRequest(message));

/** CreateToken as the admin, with a valid request changed by `change`. */
export function createRequest(change: (r: Record<string, unknown>) => void = () => {}): () => object {
  return () => {
    const r: Record<string, unknown> = {
      kind: TokenKind.PROJECT,
      ownerId: 'bad-input',
      name: 'n',
      scopes: ['read'],
      expiresAt: inMs(s.clock.now(), DAY),
    };
    change(r);
    return r;
  };
}

export const admin = () => f.admin;
export const PAST_MAX = (365 + 1) * DAY;
export const KB100 = 'x'.repeat(100 * 1024);
/** The scope syntax error (RFC 6749 §3.3 scope-token, at most 128 characters) for `field`. */
export const SCOPE_SYNTAX = (field: string) =>
  `${field}: each scope must be 1-128 printable characters without spaces, quotes or backslashes`;
export const SEVENTEEN_AUDIENCES = Array.from({ length: 17 }, (_, i) => `https://a${i}.example`);
export const LONG_AUDIENCE = `https://a.example/${'x'.repeat(256)}`;
