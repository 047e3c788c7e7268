/**
 * Issue acceptance 5: bad input gets the documented answer on gRPC and on HTTP, never
 * Internal/500, and the server keeps serving. Every row of docs/bad-input.md is one case of the
 * table below; the last tests check that the docs list exactly these rows and that the server
 * still serves after all of it.
 */
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DescService } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { formatSecret } from '../../src/domain/token-secret.js';
import { GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT } from '../../src/domain/token-exchange.js';
import { HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../support/connect-client.js';
import { grpcClient, grpcRaw } from '../support/grpc-client.js';
import { inMs, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES } from '../support/engines.js';

const DAY = 86_400_000;
const MAX_LIFETIME_SECONDS = 365 * 86_400;
const ACCESS = TOKEN_TYPE_ACCESS_TOKEN;

// ---------------------------------------------------------------------------------------------
// Fixtures: tokens in every state, created once against the real server.

interface Issued {
  id: string;
  secret: string;
}

interface Fixtures {
  admin: string;
  /** project token with read, write, rotor:rotate and audience https://api.example; failing calls never consume it. */
  live: Issued;
  expired: Issued;
  revoked: Issued;
  /** Well-formed, valid checksum, never issued. */
  unknown: string;
  malformed: string;
  /** `live` with its last character changed. */
  badChecksum: string;
}

let s: TestServer;
let f: Fixtures;

// ---------------------------------------------------------------------------------------------
// The table.

/** What a unary call answered: a gRPC status / Connect code (same numbers) and its message. */
interface RpcAnswer {
  code: number;
  message: string;
  response?: unknown;
}

interface HttpAnswer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

interface RpcExpect {
  /** gRPC status / Connect code; the two enums share their numbers. */
  code: number;
  /** A fragment of the message (string: substring); '' for OK answers. */
  message: string;
  /** Extra check on a successful response. */
  response?: (r: Record<string, unknown>) => void;
  responseDoc?: string;
}

interface HttpExpect {
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

type RpcSend = () => Promise<RpcAnswer>;
type HttpSend = () => Promise<HttpAnswer>;

interface Case {
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

function onGrpc(service: DescService, method: string, request: () => object, token?: () => string | undefined): RpcSend {
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

function onConnect(service: DescService, method: string, request: () => object, token?: () => string | undefined, binary = false): RpcSend {
  return async () => {
    const client = connectClient(service, s.httpUrl, token?.(), { binary }) as unknown as Record<string, (r: unknown) => Promise<unknown>>;
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
function rpc(
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
function onHttp(path: string, init: () => { method?: string; contentType?: string; bearer?: string; body?: string | Uint8Array }): HttpSend {
  return async () => {
    const i = init();
    const headers: Record<string, string> = {};
    if (i.contentType !== undefined) headers['content-type'] = i.contentType;
    if (i.bearer !== undefined) headers.authorization = `Bearer ${i.bearer}`;
    try {
      return await httpAnswer(await fetch(`${s.httpUrl}${path}`, { method: i.method ?? 'POST', headers, body: i.body, signal: AbortSignal.timeout(5000) }));
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      return { status: 0, headers: new Headers(), text: `fetch failed: ${cause?.code ?? cause?.message ?? String(e)}`, json: undefined };
    }
  };
}

const FORM = 'application/x-www-form-urlencoded';

function formBody(params: Record<string, string>): string {
  return new URLSearchParams(params).toString();
}

/** snake_case connect error codes on the wire ("invalid_argument") → Code. */
function connectCodeOf(name: unknown): number {
  const found = Object.entries(Code).find(([k, v]) => typeof v === 'number' && k.replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase() === name);
  return found ? (found[1] as number) : -1;
}

/** A raw unary Connect request (any content type) to the HTTP port. */
function onConnectRaw(path: string, contentType: string, body: () => string | Uint8Array): RpcSend {
  return async () => {
    const res = await fetch(`${s.httpUrl}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body: body() });
    const a = await httpAnswer(res);
    if (res.status === 200) return { code: 0, message: '' };
    if (!a.json) return { code: -1, message: `HTTP ${res.status}: ${a.text.slice(0, 200)}` };
    return { code: connectCodeOf(a.json.code), message: String(a.json.message ?? '') };
  };
}

/** A raw gRPC-Web request: one enveloped message; the status comes from headers or the trailer frame. */
function onGrpcWebRaw(path: string, payload: () => Uint8Array): RpcSend {
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
        for (const line of body.subarray(off + 5, off + 5 + len).toString('utf8').split(/\r?\n/)) {
          const m = /^([^:]+):\s*(.*)$/.exec(line);
          if (m?.[1]?.toLowerCase() === 'grpc-status') status = m[2]!;
          if (m?.[1]?.toLowerCase() === 'grpc-message') message = m[2]!;
        }
      }
      off += 5 + len;
    }
    if (res.status !== 200) return { code: -1, message: `HTTP ${res.status}` };
    return { code: status === null ? -1 : Number(status), message: message === null ? '' : decodeURIComponent(message) };
  };
}

function onGrpcRaw(path: string, payload: () => Buffer): RpcSend {
  return async () => {
    const r = await grpcRaw(s.grpcAddress, path, payload());
    return { code: r.code, message: r.details };
  };
}

// ---- the RFC 8693 exchange on all three: ExchangeToken (gRPC, Connect) and POST /oauth/token ----

/** RFC 8693 parameters; an array is a repeated parameter (only `audience` and `resource` may repeat). */
type ExchangeForm = Record<string, string | string[]>;

function exchangeParams(overrides: () => ExchangeForm): () => ExchangeForm {
  return () => {
    const params: ExchangeForm = { grant_type: GRANT_TOKEN_EXCHANGE, subject_token: f.live.secret, subject_token_type: ACCESS, ...overrides() };
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
  return new URLSearchParams(Object.entries(params).flatMap(([k, v]): [string, string][] => (typeof v === 'string' ? [[k, v]] : v.map((x) => [k, x])))).toString();
}

/** One exchange case on the three endpoints. `overrides` sets RFC 8693 parameters ('' removes one). */
function exchange(name: string, overrides: () => ExchangeForm, rpcExpect: RpcExpect, httpExpect: HttpExpect): Case {
  const params = exchangeParams(overrides);
  return {
    name,
    ...rpc(TokenExchangeService, 'exchangeToken', () => camelRequest(params()), undefined, rpcExpect),
    http: { via: 'POST /oauth/token', send: onHttp('/oauth/token', () => ({ contentType: FORM, body: exchangeFormBody(params()) })), expect: httpExpect },
  };
}

const invalidArgument = (message: string): RpcExpect => ({ code: grpc.status.INVALID_ARGUMENT, message });
const unauthenticated = (message: string): RpcExpect => ({ code: grpc.status.UNAUTHENTICATED, message });
const invalidRequest = (description: string): HttpExpect => ({ status: 400, error: 'invalid_request', description });
/** An exchange refused as INVALID_ARGUMENT on the RPC ports and invalid_request on /oauth/token, with one message. */
const invalidExchange = (name: string, overrides: () => ExchangeForm, message: string): Case =>
  exchange(name, overrides, invalidArgument(message), invalidRequest(message));

/** CreateToken as the admin, with a valid request changed by `change`. */
function createRequest(change: (r: Record<string, unknown>) => void = () => {}): () => object {
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

const admin = () => f.admin;
const PAST_MAX = (365 + 1) * DAY;
/** Bytes that are no protobuf: 0xff is field 31 with the invalid wire type 7. */
const GARBAGE_PROTO = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);
const KB100 = 'x'.repeat(100 * 1024);
/** The scope syntax error (RFC 6749 §3.3 scope-token, at most 128 characters) for `field`. */
const SCOPE_SYNTAX = (field: string) => `${field}: each scope must be 1-128 printable characters without spaces, quotes or backslashes`;
const SEVENTEEN_AUDIENCES = Array.from({ length: 17 }, (_, i) => `https://a${i}.example`);
const LONG_AUDIENCE = `https://a.example/${'x'.repeat(256)}`;
/** A well-formed JWT that no key of Rotor's signed. */
const FOREIGN_JWT = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Im5vLXN1Y2gta2lkIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

const cases: Case[] = [
  // ---- the presented token (RFC 8693 subject_token) ----
  exchange('malformed token', () => ({ subject_token: f.malformed }), unauthenticated('token is malformed'), invalidRequest('token is malformed')),
  exchange(
    'bad checksum (last character of a valid secret changed)',
    () => ({ subject_token: f.badChecksum }),
    unauthenticated('token checksum does not match'),
    invalidRequest('token checksum does not match'),
  ),
  exchange('unknown token (well-formed, valid checksum, never issued)', () => ({ subject_token: f.unknown }), unauthenticated('token is unknown'), invalidRequest('token is unknown')),
  exchange('expired token', () => ({ subject_token: f.expired.secret }), unauthenticated('token has expired'), invalidRequest('token has expired')),
  exchange('revoked token', () => ({ subject_token: f.revoked.secret }), unauthenticated('token has been revoked'), invalidRequest('token has been revoked')),
  invalidExchange('subject_token longer than 8192 characters', () => ({ subject_token: 'a'.repeat(10_000) }), 'subject_token is too long'),

  // ---- RFC 8693 §2.1 parameters ----
  exchange(
    'wrong grant_type (authorization_code)',
    () => ({ grant_type: 'authorization_code' }),
    invalidArgument(`grant_type must be ${GRANT_TOKEN_EXCHANGE}`),
    { status: 400, error: 'unsupported_grant_type', description: `grant_type must be ${GRANT_TOKEN_EXCHANGE}` },
  ),
  invalidExchange('missing grant_type', () => ({ grant_type: '' }), 'grant_type is required'),
  invalidExchange('missing subject_token', () => ({ subject_token: '' }), 'subject_token is required'),
  invalidExchange('missing subject_token_type', () => ({ subject_token_type: '' }), 'subject_token_type is required'),
  invalidExchange(
    'actor_token without actor_token_type',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' }),
    'actor_token_type is required when actor_token is present',
  ),
  invalidExchange(
    'actor_token_type without actor_token',
    () => ({ actor_token_type: TOKEN_TYPE_JWT }),
    'actor_token_type must not be sent without actor_token',
  ),
  invalidExchange(
    'actor_token_type other than jwt',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig', actor_token_type: ACCESS }),
    `actor_token_type must be ${TOKEN_TYPE_JWT}`,
  ),
  invalidExchange(
    'actor_token for a token without a workload binding',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig', actor_token_type: TOKEN_TYPE_JWT }),
    'actor_token is not accepted: this token has no workload binding',
  ),
  invalidExchange(
    'unknown token type URN as subject_token_type',
    () => ({ subject_token_type: 'urn:example:token-type:magic' }),
    'subject_token_type is not a known token type',
  ),
  invalidExchange(
    'subject_token_type jwt (federation not configured)',
    () => ({ subject_token_type: TOKEN_TYPE_JWT }),
    'subject_token_type jwt (workload federation) is not configured',
  ),
  exchange(
    'scope escalation on exchange (scope=read admin)',
    () => ({ scope: 'read admin' }),
    invalidArgument('requested scopes exceed the scopes held: admin'),
    { status: 400, error: 'invalid_scope', description: 'requested scopes exceed the scopes held: admin' },
  ),
  exchange(
    'audience widening on exchange',
    () => ({ audience: 'https://elsewhere.example' }),
    invalidArgument('audience not allowed for this token: https://elsewhere.example'),
    { status: 400, error: 'invalid_target', description: 'audience not allowed for this token' },
  ),
  invalidExchange(
    'idempotency_key too short',
    () => ({ idempotency_key: 'short' }),
    'idempotency_key: must be 22-128 characters',
  ),
  invalidExchange(
    'idempotency_key of 31 hex digits (124 bits)',
    () => ({ idempotency_key: '0123456789abcdef0123456789abcde'.split('').reverse().join('') }),
    'idempotency_key: a key of hex digits only must be at least 32 characters',
  ),
  invalidExchange(
    'idempotency_key that is not random (a counter)',
    () => ({ idempotency_key: '00000000000000000000000000004711' }),
    'idempotency_key: does not look random (too few distinct characters)',
  ),
  invalidExchange(
    'idempotency_key that is not random (a repeated pattern)',
    () => ({ idempotency_key: 'Xk3_9QpZXk3_9QpZXk3_9QpZXk3_9QpZ' }),
    'idempotency_key: does not look random (it repeats a shorter pattern)',
  ),
  invalidExchange(
    'idempotency_key longer than 128 characters',
    () => ({ idempotency_key: 'k'.repeat(129) }),
    'idempotency_key: must be 22-128 characters',
  ),
  invalidExchange(
    'more than 64 scopes on exchange (65 in scope)',
    () => ({ scope: Array.from({ length: 65 }, (_, i) => `s${i}`).join(' ') }),
    'scope: at most 64 scopes',
  ),
  exchange(
    'scope longer than 128 characters on exchange',
    () => ({ scope: 's'.repeat(129) }),
    invalidArgument(SCOPE_SYNTAX('scope')),
    invalidRequest(SCOPE_SYNTAX('scope')),
  ),
  exchange('scope with a double quote on exchange', () => ({ scope: 're"ad' }), invalidArgument(SCOPE_SYNTAX('scope')), invalidRequest(SCOPE_SYNTAX('scope'))),
  exchange('scope with a backslash on exchange', () => ({ scope: 're\\ad' }), invalidArgument(SCOPE_SYNTAX('scope')), invalidRequest(SCOPE_SYNTAX('scope'))),
  invalidExchange(
    'more than 16 audiences on exchange (17 audience parameters)',
    () => ({ audience: SEVENTEEN_AUDIENCES }),
    'audience: at most 16 values',
  ),
  invalidExchange(
    'audience longer than 256 characters on exchange',
    () => ({ audience: LONG_AUDIENCE }),
    'audience: must be at most 256 characters',
  ),
  invalidExchange(
    'resource that is not an absolute URI (relative/path)',
    () => ({ resource: 'relative/path' }),
    'resource: each value must be an absolute URI without a fragment',
  ),
  invalidExchange(
    'resource with a fragment (https://a.example/x#frag)',
    () => ({ resource: 'https://a.example/x#frag' }),
    'resource: each value must be an absolute URI without a fragment',
  ),

  // ---- requested_token_type and JWT access tokens (docs/jwt-access-tokens.md) ----
  invalidExchange(
    'unknown token type URN as requested_token_type',
    () => ({ requested_token_type: 'urn:example:token-type:magic' }),
    'requested_token_type is not a known token type',
  ),
  invalidExchange(
    'requested_token_type id_token (known, not issued)',
    () => ({ requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' }),
    `requested_token_type must be ${ACCESS} or ${TOKEN_TYPE_JWT}`,
  ),
  exchange(
    'requested_token_type jwt with a rotor:* scope (scope=rotor:rotate)',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, scope: 'rotor:rotate' }),
    invalidArgument('scopes rotor:* are not issued in JWT access tokens: rotor:rotate'),
    { status: 400, error: 'invalid_scope', description: 'scopes rotor:* are not issued in JWT access tokens: rotor:rotate' },
  ),
  exchange(
    'requested_token_type jwt with scope escalation (scope=read admin)',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, scope: 'read admin' }),
    invalidArgument('requested scopes exceed the scopes held: admin'),
    { status: 400, error: 'invalid_scope', description: 'requested scopes exceed the scopes held: admin' },
  ),
  invalidExchange(
    'requested_token_type jwt with an actor_token for an unbound token',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig', actor_token_type: TOKEN_TYPE_JWT }),
    'actor_token is not accepted: this token has no workload binding',
  ),
  invalidExchange(
    'requested_token_type jwt with a jwt subject_token (federation straight into a JWT)',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, subject_token: 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2NpLmV4YW1wbGUifQ.sig', subject_token_type: TOKEN_TYPE_JWT }),
    `requested_token_type jwt needs subject_token_type ${ACCESS}; federate first, then exchange the issued token for a JWT`,
  ),
  exchange(
    'requested_token_type jwt for a revoked token',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, subject_token: f.revoked.secret }),
    unauthenticated('token has been revoked'),
    invalidRequest('token has been revoked'),
  ),

  // ---- RotateToken (by id, as admin) ----
  {
    name: 'scope escalation on RotateToken (scopes read, delete)',
    ...rpc(TokenService, 'rotateToken', () => ({ id: f.live.id, scopes: ['read', 'delete'] }), admin, invalidArgument('requested scopes exceed the scopes held: delete')),
  },
  {
    name: 'RotateToken expires_at past the max lifetime',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, expiresAt: inMs(s.clock.now(), PAST_MAX) }),
      admin,
      invalidArgument(`expires_at exceeds the max lifetime of ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'RotateToken expires_at in the past',
    ...rpc(TokenService, 'rotateToken', () => ({ id: f.live.id, expiresAt: inMs(s.clock.now(), -60_000) }), admin, invalidArgument('expires_at must be in the future')),
  },
  {
    name: 'RotateToken id that is not an id',
    ...rpc(TokenService, 'rotateToken', () => ({ id: 'not an id' }), admin, invalidArgument('id: is not a valid id')),
  },
  {
    name: 'RotateToken of an unknown id',
    ...rpc(TokenService, 'rotateToken', () => ({ id: 'tok_doesNotExist' }), admin, { code: grpc.status.NOT_FOUND, message: 'token tok_doesNotExist not found' }),
  },
  {
    name: 'RotateToken idempotency_key longer than 128 characters',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, idempotencyKey: 'k'.repeat(129) }),
      admin,
      invalidArgument('idempotency_key: must be 22-128 characters'),
    ),
  },

  // ---- CreateToken ----
  {
    name: 'CreateToken expires_at past the max lifetime',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.expiresAt = inMs(s.clock.now(), PAST_MAX))),
      admin,
      invalidArgument(`expires_at exceeds the max lifetime of ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'CreateToken expires_at in the past',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.expiresAt = inMs(s.clock.now(), -60_000))), admin, invalidArgument('expires_at must be in the future')),
  },
  {
    name: 'CreateToken expires_at after year 9999',
    grpc: {
      send: onGrpc(TokenService, 'createToken', createRequest((r) => (r.expiresAt = { seconds: 253402300800n, nanos: 0 })), admin),
      expect: invalidArgument('expires_at is out of range'),
    },
    // JSON cannot carry such a Timestamp (the Connect client refuses to encode it), so binary.
    connect: {
      via: 'Connect, application/proto',
      send: onConnect(TokenService, 'createToken', createRequest((r) => (r.expiresAt = { seconds: 253402300800n, nanos: 0 })), admin, true),
      expect: invalidArgument('expires_at is out of range'),
    },
  },
  {
    name: 'CreateToken without expires_at',
    ...rpc(TokenService, 'createToken', createRequest((r) => delete r.expiresAt), admin, invalidArgument('expires_at is required')),
  },
  {
    name: 'CreateToken kind UNSPECIFIED',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.kind = TokenKind.UNSPECIFIED)), admin, invalidArgument('kind must be one of')),
  },
  {
    name: 'CreateToken policy max lifetime above the server max',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.policy = { maxLifetimeSeconds: BigInt(MAX_LIFETIME_SECONDS + 1) })),
      admin,
      invalidArgument(`policy.max_lifetime_seconds must be between 0 and ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'CreateToken workload binding to an issuer the server does not trust',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.policy = { workloadBinding: { issuer: 'https://ci.example', subject: 'repo:org/app:*', audience: 'rotor' } })),
      admin,
      invalidArgument('policy.workload_binding.issuer: is not a trusted issuer of this server'),
    ),
  },
  {
    name: 'CreateToken workload binding without a subject',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.policy = { workloadBinding: { issuer: 'https://ci.example', subject: '', audience: 'rotor' } })),
      admin,
      invalidArgument('policy.workload_binding.subject: is required'),
    ),
  },
  {
    name: 'CreateToken scope escalation by a non-admin (scope admin)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => {
        r.ownerId = 'bad-input';
        r.scopes = ['admin'];
      }),
      () => f.live.secret,
      invalidArgument('requested scopes exceed the scopes held: admin'),
    ),
  },
  {
    name: 'CreateToken name longer than 128',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.name = 'n'.repeat(129))), admin, invalidArgument('name: must be at most 128 characters')),
  },
  {
    name: 'CreateToken description longer than 1024',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.description = 'd'.repeat(1025))), admin, invalidArgument('description: must be at most 1024 characters')),
  },
  {
    name: 'CreateToken owner_id longer than 128',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.ownerId = 'o'.repeat(129))), admin, invalidArgument('owner_id: must be at most 128 characters')),
  },
  {
    name: 'CreateToken owner_id with a space',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.ownerId = 'bad input')), admin, invalidArgument('owner_id: must be printable characters without whitespace')),
  },
  {
    name: 'CreateToken kind out of the enum range (99)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.kind = 99)),
      admin,
      invalidArgument('kind must be one of PERSONAL, PROJECT, GROUP, SERVICE_ACCOUNT'),
    ),
  },
  {
    name: 'CreateToken more than 64 scopes (65)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = Array.from({ length: 65 }, (_, i) => `s${i}`))),
      admin,
      invalidArgument('scopes: at most 64 scopes'),
    ),
  },
  {
    name: 'CreateToken scope longer than 128 characters',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.scopes = ['read', 's'.repeat(129)])), admin, invalidArgument(SCOPE_SYNTAX('scopes'))),
  },
  {
    name: 'CreateToken scope with a space (one scope "read write")',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.scopes = ['read write'])), admin, invalidArgument(SCOPE_SYNTAX('scopes'))),
  },
  {
    name: 'CreateToken scope with a double quote',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.scopes = ['re"ad'])), admin, invalidArgument(SCOPE_SYNTAX('scopes'))),
  },
  {
    name: 'CreateToken scope with a backslash',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.scopes = ['re\\ad'])), admin, invalidArgument(SCOPE_SYNTAX('scopes'))),
  },
  {
    name: 'CreateToken more than 16 audiences (17)',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.audiences = SEVENTEEN_AUDIENCES)), admin, invalidArgument('audiences: at most 16 values')),
  },
  {
    name: 'CreateToken audience longer than 256 characters',
    ...rpc(TokenService, 'createToken', createRequest((r) => (r.audiences = [LONG_AUDIENCE])), admin, invalidArgument('audiences: must be at most 256 characters')),
  },
  ...(['name', 'description'] as const).flatMap((field) =>
    [
      ['U+202E, right-to-left override', '\u202e'],
      ['U+009B, C1 control', '\u009b'],
    ].map(([what, ch]): Case => ({
      name: `CreateToken ${field} containing ${what}`,
      ...rpc(
        TokenService,
        'createToken',
        createRequest((r) => (r[field] = `evil${ch}txt.exe`)),
        admin,
        invalidArgument(`${field}: must not contain control or format characters`),
      ),
    })),
  ),
  {
    name: 'CreateToken with a 100 KB description (100 KB request body)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.description = KB100)),
      admin,
      { code: grpc.status.RESOURCE_EXHAUSTED, message: 'Received message larger than max' },
      { code: Code.ResourceExhausted, message: 'message size is larger than configured readMaxBytes 65536' },
    ),
  },

  // ---- ListTokens (as admin) ----
  {
    name: 'ListTokens page_size 501',
    ...rpc(TokenService, 'listTokens', () => ({ pageSize: 501 }), admin, invalidArgument('page_size must be between 0 and 500')),
  },
  {
    name: 'ListTokens negative page_size (-1)',
    ...rpc(TokenService, 'listTokens', () => ({ pageSize: -1 }), admin, invalidArgument('page_size must be between 0 and 500')),
  },
  {
    name: 'ListTokens garbage page_token',
    ...rpc(TokenService, 'listTokens', () => ({ pageToken: 'garbage!not-a-cursor' }), admin, invalidArgument('page_token is not valid')),
  },
  {
    name: 'ListTokens state out of the enum range (99)',
    ...rpc(TokenService, 'listTokens', () => ({ state: 99 }), admin, invalidArgument('state is not a known token state')),
  },
  {
    name: 'ListTokens owner_id with a space',
    ...rpc(TokenService, 'listTokens', () => ({ ownerId: 'bad input' }), admin, invalidArgument('owner_id: must be printable characters without whitespace')),
  },

  // ---- caller credentials ----
  {
    name: 'no bearer token',
    ...rpc(TokenService, 'introspectToken', () => ({ token: f.unknown }), undefined, unauthenticated('missing bearer token')),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, body: formBody({ token: f.live.secret }) })),
      expect: { status: 401, error: 'invalid_token', description: 'missing bearer token', header: ['www-authenticate', 'Bearer realm="rotor"'] },
    },
  },
  {
    name: 'malformed bearer token',
    ...rpc(TokenService, 'introspectToken', () => ({ token: f.unknown }), () => f.malformed, unauthenticated('bearer token is malformed')),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, bearer: f.malformed, body: formBody({ token: f.live.secret }) })),
      expect: { status: 401, error: 'invalid_token', description: 'bearer token is malformed', header: ['www-authenticate', 'Bearer realm="rotor", error="invalid_token"'] },
    },
  },
  {
    name: 'expired bearer token',
    ...rpc(TokenService, 'introspectToken', () => ({ token: f.unknown }), () => f.expired.secret, unauthenticated('bearer token has expired')),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, bearer: f.expired.secret, body: formBody({ token: f.live.secret }) })),
      expect: { status: 401, error: 'invalid_token', description: 'bearer token has expired', header: ['www-authenticate', 'Bearer realm="rotor", error="invalid_token"'] },
    },
  },
  {
    name: 'introspect an unknown token (admin caller)',
    ...rpc(TokenService, 'introspectToken', () => ({ token: f.unknown }), admin, {
      code: grpc.status.OK,
      message: '',
      response: (r) => expect(r.active).toBe(false),
      responseDoc: 'active=false',
    }),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, bearer: f.admin, body: formBody({ token: f.unknown }) })),
      expect: { status: 200, json: { active: false } },
    },
  },
  {
    name: 'introspect a JWT Rotor did not sign (admin caller)',
    ...rpc(TokenService, 'introspectToken', () => ({ token: FOREIGN_JWT }), admin, {
      code: grpc.status.OK,
      message: '',
      response: (r) => expect(r.active).toBe(false),
      responseDoc: 'active=false',
    }),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, bearer: f.admin, body: formBody({ token: FOREIGN_JWT }) })),
      expect: { status: 200, json: { active: false } },
    },
  },
  {
    name: 'revoke a JWT access token (RFC 7009 §2.2.1)',
    http: {
      via: 'POST /oauth/revoke',
      send: onHttp('/oauth/revoke', () => ({ contentType: FORM, body: formBody({ token: FOREIGN_JWT }) })),
      expect: { status: 400, error: 'unsupported_token_type', description: 'JWT access tokens cannot be revoked' },
    },
  },
  {
    name: 'revoke an unknown token',
    ...rpc(TokenService, 'revokeToken', () => ({ id: 'tok_doesNotExist' }), admin, { code: grpc.status.NOT_FOUND, message: 'token tok_doesNotExist not found' }),
    http: {
      via: 'POST /oauth/revoke',
      send: onHttp('/oauth/revoke', () => ({ contentType: FORM, body: formBody({ token: f.unknown }) })),
      expect: { status: 200, body: '' },
    },
  },

  // ---- garbage bodies ----
  {
    name: 'garbage protobuf (CreateToken)',
    grpc: {
      send: onGrpcRaw('/rotor.v1.TokenService/CreateToken', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid rotor.v1.CreateTokenRequest'),
    },
    connect: {
      via: 'Connect, application/proto',
      send: onConnectRaw('/rotor.v1.TokenService/CreateToken', 'application/proto', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid message'),
    },
  },
  {
    name: 'garbage protobuf (ExchangeToken)',
    grpc: {
      send: onGrpcRaw('/rotor.v1.TokenExchangeService/ExchangeToken', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid rotor.v1.ExchangeTokenRequest'),
    },
    connect: {
      via: 'gRPC-Web, application/grpc-web+proto',
      send: onGrpcWebRaw('/rotor.v1.TokenExchangeService/ExchangeToken', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid message'),
    },
  },
  {
    name: 'garbage JSON (not JSON)',
    connect: {
      via: 'Connect, application/json',
      send: onConnectRaw('/rotor.v1.TokenService/CreateToken', 'application/json', () => '{"kind": "TOKEN_KIND_PROJECT", '),
      expect: invalidArgument('cannot decode message rotor.v1.CreateTokenRequest from JSON'),
    },
  },
  {
    name: 'JSON of the wrong shape (expiresAt: "tomorrow")',
    connect: {
      via: 'Connect, application/json',
      send: onConnectRaw('/rotor.v1.TokenService/CreateToken', 'application/json', () => '{"expiresAt": "tomorrow"}'),
      expect: invalidArgument('cannot decode message google.protobuf.Timestamp from JSON: invalid RFC 3339 string'),
    },
  },
  ...formGarbage('/oauth/token', undefined),
  ...formGarbage('/oauth/introspect', () => f.admin),
  ...formGarbage('/oauth/revoke', undefined),
  {
    name: '/oauth/token with a 100 KB form body',
    http: {
      via: 'POST /oauth/token',
      send: onHttp('/oauth/token', () => ({ contentType: FORM, body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: KB100 }) })),
      expect: invalidRequest('request body exceeds 65536 bytes'),
    },
  },
  {
    // Three in a row on one keep-alive connection: each must get its answer, none may stall.
    name: '/oauth/token with a 1 MB form body, three times',
    http: {
      via: 'POST /oauth/token',
      send: async () => {
        const once = onHttp('/oauth/token', () => ({ contentType: FORM, body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: 'x'.repeat(1024 * 1024) }) }));
        let last: HttpAnswer | undefined;
        for (let i = 0; i < 3; i++) {
          last = await once();
          if (last.status !== 400) break;
        }
        return last!;
      },
      expect: invalidRequest('request body exceeds 65536 bytes'),
    },
  },
  {
    name: 'GET /oauth/token',
    http: {
      via: 'GET /oauth/token',
      send: onHttp('/oauth/token', () => ({ method: 'GET' })),
      expect: { status: 405, error: 'invalid_request', description: 'use POST', header: ['allow', 'POST'] },
    },
  },
];

/** Garbage form bodies on one OAuth endpoint: wrong content type, bad encodings, a repeated parameter. */
function formGarbage(path: string, bearer: (() => string) | undefined): Case[] {
  const via = `POST ${path}`;
  const send = (contentType: string, body: () => string | Uint8Array) => onHttp(path, () => ({ contentType, bearer: bearer?.(), body: body() }));
  const first = path === '/oauth/token' ? 'grant_type' : 'token';
  return [
    {
      name: `${path}: wrong content type (JSON)`,
      http: { via, send: send('application/json', () => JSON.stringify({ [first]: 'x' })), expect: invalidRequest('content-type must be application/x-www-form-urlencoded') },
    },
    {
      name: `${path}: body is not UTF-8 (raw 0xff bytes)`,
      http: { via, send: send(FORM, () => Buffer.concat([Buffer.from(`${first}=`), Buffer.from([0xff, 0xfe, 0xfd])])), expect: invalidRequest('request body is not valid UTF-8') },
    },
    {
      name: `${path}: repeated single-valued parameter (${first} twice)`,
      http: { via, send: send(FORM, () => `${first}=a&${first}=b`), expect: invalidRequest(`parameter ${first} must not be repeated`) },
    },
    {
      name: `${path}: invalid percent-encoding (%ZZ, %FF)`,
      http: {
        via,
        send: send(FORM, () =>
          path === '/oauth/token'
            ? `grant_type=${encodeURIComponent(GRANT_TOKEN_EXCHANGE)}&subject_token=rtr_prj_%ZZ%FF&subject_token_type=${encodeURIComponent(ACCESS)}`
            : 'token=rtr_prj_%ZZ%FF',
        ),
        // Form decoding (WHATWG) keeps "%ZZ" literally and turns %FF into U+FFFD; the token is then malformed.
        expect:
          path === '/oauth/token'
            ? invalidRequest('token is malformed')
            : path === '/oauth/introspect'
              ? { status: 200, json: { active: false } }
              : { status: 200, body: '' },
      },
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Checks.

/** Every answer the table received, for the global "never Internal / 500" check. */
const answers: { engine: string; name: string; where: string; code?: number; status?: number }[] = [];

function presentedSecrets(): string[] {
  return [f.admin, f.live.secret, f.expired.secret, f.revoked.secret, f.unknown, f.badChecksum];
}

function checkRpc(where: string, name: string, a: RpcAnswer, e: RpcExpect): void {
  answers.push({ engine: s.engine, name, where, code: a.code });
  expect(a.code, `${where}: never Internal (${a.message})`).not.toBe(grpc.status.INTERNAL);
  expect(a.code, `${where}: code (message: ${a.message})`).toBe(e.code);
  if (e.message === '') expect(a.message).toBe('');
  else expect(a.message).toContain(e.message);
  for (const secret of presentedSecrets()) expect(a.message).not.toContain(secret);
  if (e.response) e.response(a.response as Record<string, unknown>);
}

function checkHttp(where: string, name: string, a: HttpAnswer, e: HttpExpect): void {
  answers.push({ engine: s.engine, name, where, status: a.status });
  expect(a.status, `${where}: never 500 (${a.text.slice(0, 200)})`).not.toBe(500);
  expect(a.status, `${where}: status (${a.text.slice(0, 200)})`).toBe(e.status);
  if (e.error !== undefined) {
    expect(a.headers.get('content-type')).toMatch(/^application\/json/);
    expect(a.headers.get('cache-control')).toBe('no-store');
    expect(a.json?.error).toBe(e.error);
    expect(String(a.json?.error_description)).toContain(e.description ?? '');
  }
  if (e.header) expect(a.headers.get(e.header[0]) ?? '').toContain(e.header[1]);
  if (e.body !== undefined) expect(a.text).toBe(e.body);
  if (e.json !== undefined) expect(a.json).toEqual(e.json);
  for (const secret of presentedSecrets()) expect(a.text).not.toContain(secret);
}

// ---------------------------------------------------------------------------------------------
// The docs table, rendered from the cases, so docs/bad-input.md cannot drift from the tests.

function grpcName(code: number): string {
  return grpc.status[code] ?? String(code);
}

function connectName(code: number): string {
  if (code === grpc.status.OK) return 'ok';
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

function md(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function rpcCell(e: RpcExpect | undefined, name: (code: number) => string, via?: string): string {
  if (!e) return '—';
  let cell = `\`${name(e.code)}\``;
  if (e.message !== '') cell += ` "${md(e.message)}"`;
  if (e.responseDoc) cell += `, ${e.responseDoc}`;
  if (via) cell += ` (${via})`;
  return cell;
}

function httpCell(h: Case['http']): string {
  if (!h) return '—';
  const e = h.expect;
  const parts = [`${e.status}`];
  if (e.error !== undefined) parts.push(`\`${e.error}\` "${md(e.description ?? '')}"`);
  if (e.json !== undefined) parts.push(`\`${md(JSON.stringify(e.json))}\``);
  if (e.body === '') parts.push('empty body');
  if (e.header) parts.push(`\`${e.header[0]}: ${md(e.header[1])}…\``);
  return `${parts.join(' ')} (${h.via})`;
}

function docRow(c: Case): string {
  return `| ${md(c.name)} | ${rpcCell(c.grpc?.expect, grpcName)} | ${rpcCell(c.connect?.expect, connectName, c.connect?.via)} | ${httpCell(c.http)} |`;
}

// ---------------------------------------------------------------------------------------------

describe.each(ENGINES)('bad input gets the documented answer on every port (acceptance 5) on %s', (engine) => {
  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    const g = grpcClient(TokenService, s.grpcAddress);
    const create = async (ownerId: string, ms: number): Promise<Issued> => {
      const r = (await g.call(
        'createToken',
        // An audience, so that asking for another one widens (a token without any is unrestricted).
        { kind: TokenKind.PROJECT, ownerId, name: ownerId, scopes: ['read', 'write', 'rotor:rotate'], audiences: ['https://api.example'], expiresAt: inMs(s.clock.now(), ms) },
        { token: s.adminSecret },
      )) as { token: { id: string }; secret: string };
      return { id: r.token.id, secret: r.secret };
    };
    const live = await create('bad-input', 7 * DAY);
    const expired = await create('bad-input-expired', 60_000);
    const revoked = await create('bad-input-revoked', DAY);
    await g.call('revokeToken', { id: revoked.id }, { token: s.adminSecret });
    g.close();
    s.clock.advance(120_000);
    const last = live.secret.slice(-1);
    f = {
      admin: s.adminSecret,
      live,
      expired,
      revoked,
      unknown: formatSecret('project', (n) => new Uint8Array(randomBytes(n))),
      malformed: 'rtr_prj_this-is-not-a-token',
      badChecksum: live.secret.slice(0, -1) + (last === 'A' ? 'B' : 'A'),
    };
  });
  afterAll(async () => {
    for (const c of grpcClients.values()) c.close();
    grpcClients.clear();
    await s?.stop();
  });

  for (const c of cases) {
    const test = c.fails ? it.fails : it;
    test(c.name, async () => {
      if (c.grpc) checkRpc('gRPC', c.name, await c.grpc.send(), c.grpc.expect);
      if (c.connect) checkRpc(c.connect.via ?? 'Connect', c.name, await c.connect.send(), c.connect.expect);
      if (c.http) checkHttp(c.http.via, c.name, await c.http.send(), c.http.expect);
    });
  }

  it('answered nothing with Internal or 500, and logged no unexpected error', () => {
    expect(answers.length).toBeGreaterThanOrEqual(cases.length);
    expect(answers.filter((a) => a.engine === engine).length).toBeGreaterThanOrEqual(cases.length);
    expect(answers.filter((a) => a.code === grpc.status.INTERNAL || a.status === 500)).toEqual([]);
    expect(s.logs.filter((l) => /unexpected error|unmapped error|rpc handler failed/.test(l))).toEqual([]);
  });

  it('still serves: Health Check on both ports and a successful CreateToken', async () => {
    const g = grpcClient(HealthService, s.grpcAddress);
    expect(((await g.call('check', {})) as { status: string }).status).toBe('SERVING');
    g.close();
    expect((await connectClient(HealthService, s.httpUrl).check({})).status).toBe('SERVING');
    const t = grpcClient(TokenService, s.grpcAddress);
    const created = (await t.call('createToken', createRequest()(), { token: f.admin })) as { secret: string };
    t.close();
    expect(created.secret).toMatch(/^rtr_prj_/);
    const viaConnect = await connectClient(TokenService, s.httpUrl, f.admin).createToken(createRequest()());
    expect(viaConnect.secret).toMatch(/^rtr_prj_/);
    // The untouched live token still rotates through the exchange endpoint: no failing case consumed it.
    const res = await fetch(`${s.httpUrl}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': FORM },
      body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: f.live.secret, subject_token_type: ACCESS }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { access_token: string }).access_token).toMatch(/^rtr_prj_/);
  });

  it('docs/bad-input.md lists exactly the rows of this table', () => {
    const doc = readFileSync(new URL('../../docs/bad-input.md', import.meta.url), 'utf8');
    const rows = doc.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Input') && !l.startsWith('| ---'));
    expect(rows).toEqual(cases.map(docRow));
  });
});
