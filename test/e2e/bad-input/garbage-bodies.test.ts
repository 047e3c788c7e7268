/**
 * docs/bad-input.md "Garbage and oversized bodies": undecodable protobuf and JSON on both ports,
 * bad form bodies on the three OAuth endpoints, oversized form bodies and the wrong HTTP method.
 * Every row of that section is one case here, in the same order; suite.ts runs them against a real
 * server on each engine and checks the rows against the doc.
 */
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { GRANT_TOKEN_EXCHANGE } from '../../../src/domain/token-exchange.js';
import { grpcEnvelope } from '../../support/raw-grpc.js';
import { describeBadInput } from './suite.js';
import {
  ACCESS,
  KB100,
  FORM,
  f,
  formBody,
  invalidArgument,
  invalidRequest,
  onConnectRaw,
  onConnectStreamRaw,
  onGrpcFrame,
  onGrpcRaw,
  onGrpcWebRaw,
  onHttp,
  type Case,
  type HttpAnswer,
} from './support.js';

/** Bytes that are no protobuf: 0xff is field 31 with the invalid wire type 7. */
const GARBAGE_PROTO = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]);

const cases: Case[] = [
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
    name: 'garbage protobuf (WatchExpiry)',
    grpc: {
      send: onGrpcRaw('/rotor.v1.ExpiryService/WatchExpiry', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid rotor.v1.WatchExpiryRequest'),
    },
    connect: {
      via: 'Connect streaming, application/connect+proto',
      send: onConnectStreamRaw('/rotor.v1.ExpiryService/WatchExpiry', 'application/connect+proto', () => GARBAGE_PROTO),
      expect: invalidArgument('request is not a valid message'),
    },
  },
  {
    name: 'compressed flag without a content encoding (WatchExpiry)',
    connect: {
      via: 'Connect streaming, application/connect+proto',
      send: onConnectStreamRaw(
        '/rotor.v1.ExpiryService/WatchExpiry',
        'application/connect+proto',
        () => Buffer.alloc(0),
        0x01,
      ),
      expect: invalidArgument(
        'request is not a valid message: its compressed flag is set, but no content encoding was negotiated',
      ),
    },
  },
  // ---- compressed messages on the gRPC port (raw HTTP/2: the flag and grpc-encoding as given) ----
  {
    name: 'compressed message that is not gzip (grpc-encoding: gzip, CreateToken)',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', 'gzip', () => grpcEnvelope(1, GARBAGE_PROTO)),
      expect: invalidArgument('request message could not be decompressed'),
    },
  },
  {
    name: 'compressed message that is not deflate (grpc-encoding: deflate, CreateToken)',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', 'deflate', () => grpcEnvelope(1, GARBAGE_PROTO)),
      expect: invalidArgument('request message could not be decompressed'),
    },
  },
  {
    name: 'gzip of garbage protobuf (grpc-encoding: gzip, CreateToken)',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', 'gzip', () => grpcEnvelope(1, gzipSync(GARBAGE_PROTO))),
      expect: invalidArgument('request is not a valid rotor.v1.CreateTokenRequest'),
    },
  },
  {
    name: 'gzip that decompresses to over 64 KiB (grpc-encoding: gzip, CreateToken)',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', 'gzip', () =>
        grpcEnvelope(1, gzipSync(Buffer.alloc(100 * 1024))),
      ),
      expect: {
        code: grpc.status.RESOURCE_EXHAUSTED,
        message: 'Received message that decompresses to a size larger than 65536',
      },
    },
  },
  {
    name: 'compressed with an encoding the server lacks (grpc-encoding: br, CreateToken)',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', 'br', () => grpcEnvelope(1, GARBAGE_PROTO)),
      expect: {
        code: grpc.status.UNIMPLEMENTED,
        message: 'Received message compressed with unsupported encoding "br"',
      },
    },
  },
  {
    name: 'compressed flag without grpc-encoding (CreateToken): read as uncompressed',
    grpc: {
      send: onGrpcFrame('/rotor.v1.TokenService/CreateToken', undefined, () => grpcEnvelope(1, GARBAGE_PROTO)),
      expect: invalidArgument('request is not a valid rotor.v1.CreateTokenRequest'),
    },
  },
  {
    name: 'garbage JSON (not JSON)',
    connect: {
      via: 'Connect, application/json',
      send: onConnectRaw(
        '/rotor.v1.TokenService/CreateToken',
        'application/json',
        () => '{"kind": "TOKEN_KIND_PROJECT", ',
      ),
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
      send: onHttp('/oauth/token', () => ({
        contentType: FORM,
        body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: KB100 }),
      })),
      expect: invalidRequest('request body exceeds 65536 bytes'),
    },
  },
  {
    // Three in a row on one keep-alive connection: each must get its answer, none may stall.
    name: '/oauth/token with a 1 MB form body, three times',
    http: {
      via: 'POST /oauth/token',
      send: async () => {
        const once = onHttp('/oauth/token', () => ({
          contentType: FORM,
          body: formBody({ grant_type: GRANT_TOKEN_EXCHANGE, subject_token: 'x'.repeat(1024 * 1024) }),
        }));
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
  const send = (contentType: string, body: () => string | Uint8Array) =>
    onHttp(path, () => ({ contentType, bearer: bearer?.(), body: body() }));
  const first = path === '/oauth/token' ? 'grant_type' : 'token';
  return [
    {
      name: `${path}: wrong content type (JSON)`,
      http: {
        via,
        send: send('application/json', () => JSON.stringify({ [first]: 'x' })),
        expect: invalidRequest('content-type must be application/x-www-form-urlencoded'),
      },
    },
    {
      name: `${path}: body is not UTF-8 (raw 0xff bytes)`,
      http: {
        via,
        send: send(FORM, () => Buffer.concat([Buffer.from(`${first}=`), Buffer.from([0xff, 0xfe, 0xfd])])),
        expect: invalidRequest('request body is not valid UTF-8'),
      },
    },
    {
      name: `${path}: repeated single-valued parameter (${first} twice)`,
      http: {
        via,
        send: send(FORM, () => `${first}=a&${first}=b`),
        expect: invalidRequest(`parameter ${first} must not be repeated`),
      },
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

describeBadInput('Garbage and oversized bodies', cases);
