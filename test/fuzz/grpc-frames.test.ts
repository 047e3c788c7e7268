/**
 * Fuzzes the gRPC port with raw HTTP/2 (node:http2, content-type application/grpc): random bytes
 * as a length-prefixed message to every TokenService and TokenExchangeService method, and broken
 * framing (compressed flag without compression, a length prefix that lies, trailing bytes), and
 * compressed messages (`grpc-encoding` gzip or deflate with a payload that is not, or is, what it
 * says; an encoding the server lacks). The grpc-status is never INTERNAL (13) or UNKNOWN, only a
 * code src/api/connect-errors.ts produces (or UNIMPLEMENTED for an unsupported encoding, as the
 * gRPC compression spec requires), a refused call writes nothing, and the port still serves a
 * valid call afterwards. docs/bad-input.md lists the answers.
 */
import * as http2 from 'node:http2';
import { deflateSync, gzipSync } from 'node:zlib';
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { ListTokensRequestSchema, TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { grpcClient } from '../support/grpc-client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { grpcEnvelope, rawGrpcCall } from '../support/raw-grpc.js';
import { DOCUMENTED_CODES, expectServing, fuzzParams, rowCounts } from './support.js';

const PATHS = [...TokenService.methods, ...TokenExchangeService.methods].map((m) => `/${m.parent.typeName}/${m.name}`);

/** A gRPC request body: one frame `flag | length (4 bytes, big endian) | payload`, possibly lying. */
const frame = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 200 }).map((p) => grpcEnvelope(0, p)) },
  // Compressed flag set, though no grpc-encoding was negotiated.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 50 }).map((p) => grpcEnvelope(1, p)) },
  // A length prefix that does not match the payload (the stream then ends early or has extra bytes).
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.uint8Array({ maxLength: 50 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 255 }),
      )
      .map(([p, n, flag]) => grpcEnvelope(flag, p, n)),
  },
  // Not a frame at all.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b)) },
  // Two frames for a unary method.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 20 }))
      .map(([a, b]) => Buffer.concat([grpcEnvelope(0, a), grpcEnvelope(0, b)])),
  },
);

/**
 * A compressed request: a `grpc-encoding` header and one frame with the compressed flag set, whose
 * payload is random bytes (not what the encoding says), random bytes compressed with it (they
 * decompress; the message is still garbage), a valid-looking gzip stream cut short, or a flag of 1
 * with no `grpc-encoding` at all.
 */
const compressed = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom('gzip', 'deflate'), fc.uint8Array({ maxLength: 50 }))
      .map(([encoding, p]) => ({ encoding, body: grpcEnvelope(1, p) })),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom('gzip', 'deflate'), fc.uint8Array({ maxLength: 100 })).map(([encoding, p]) => {
      const z = encoding === 'gzip' ? gzipSync(p) : deflateSync(p);
      return { encoding, body: grpcEnvelope(1, z) };
    }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 100 }), fc.nat()).map(([p, cut]) => {
      const z = gzipSync(p);
      const short = z.subarray(0, cut % z.length);
      return { encoding: 'gzip', body: grpcEnvelope(1, short) };
    }),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('br', 'snappy', 'x'), fc.uint8Array({ maxLength: 50 }))
      .map(([encoding, p]) => ({ encoding, body: grpcEnvelope(1, p) })),
  },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 50 }).map((p) => ({ encoding: undefined, body: grpcEnvelope(1, p) })),
  },
);

/** The request: a frame sent as is, or a compressed one with its `grpc-encoding`. */
const request = fc.oneof(
  { weight: 4, arbitrary: frame.map((body) => ({ encoding: undefined as string | undefined, body })) },
  { weight: 1, arbitrary: compressed },
);

/** grpc-js's answer to an encoding it does not support (gRPC compression spec: UNIMPLEMENTED). */
const UNSUPPORTED_ENCODING = /^Received message compressed with unsupported encoding "[^"]*"$/;

/** Bearer metadata: the admin's, none, or garbage. */
const bearer = fc.constantFrom<'admin' | string | undefined>('admin', undefined, 'Bearer rtr_prj_x', 'Bearer ', 'x');

// One server and one HTTP/2 session for both parts: every call here reads, or is refused having written
// nothing (checked).
let s: TestServer;
let session: http2.ClientHttp2Session;
beforeAll(async () => {
  s = await startTestServer();
  session = http2.connect(`http://${s.grpcAddress}`);
});
afterAll(async () => {
  session?.close();
  await s?.stop();
});

describe('fuzz: gRPC frames on sqlite', () => {
  /** Sends one request; resolves with the grpc-status (from trailers, or trailers-only headers). */
  async function call(
    path: string,
    body: Buffer,
    auth: string | undefined,
    encoding?: string,
  ): Promise<{ status: number; message: string }> {
    const authorization = auth === 'admin' ? `Bearer ${s.adminSecret}` : auth;
    const { status, message } = await rawGrpcCall(session, path, body, {
      ...(authorization !== undefined && { authorization }),
      ...(encoding !== undefined && { encoding }),
    });
    if (status === undefined) throw new Error(`${path}: no grpc-status`);
    return { status, message };
  }

  it.each(PATHS)('%s answers random frames with documented codes only', async (path) => {
    await fc.assert(
      fc.asyncProperty(request, bearer, async ({ body, encoding }, auth) => {
        // The admin presenting itself to RotateToken could rotate the fixture's own token.
        if (path.endsWith('/RotateToken') && auth === 'admin') auth = undefined;
        const before = await rowCounts(s);
        const r = await call(path, body, auth, encoding);
        if (r.status !== 0) {
          // grpc-js itself answers a unary call without a message, or with two, UNIMPLEMENTED (its text says
          // "server streaming method"), before Rotor sees the call: not a Rotor code, but not INTERNAL;
          // likewise a message in an encoding it does not support.
          const grpcJs =
            /^Received (no|a second) request message/.test(r.message) || UNSUPPORTED_ENCODING.test(r.message);
          if (!(r.status === 12 && grpcJs)) expect(DOCUMENTED_CODES, `${r.status} ${r.message}`).toContain(r.status);
          expect(await rowCounts(s)).toEqual(before);
        }
      }),
      fuzzParams(150),
    );
    await expectServing(s);
    // A valid call on the same port still succeeds.
    const g = grpcClient(TokenService, s.grpcAddress);
    try {
      const r = (await g.call('listTokens', { pageSize: 1 }, { token: s.adminSecret })) as { tokens: unknown[] };
      expect(r.tokens.length).toBe(1);
    } finally {
      g.close();
    }
  });
});

describe('gRPC port: compressed request messages on sqlite', () => {
  const LIST = '/rotor.v1.TokenService/ListTokens';
  const listRequest = () =>
    Buffer.from(toBinary(ListTokensRequestSchema, create(ListTokensRequestSchema, { pageSize: 1 })));

  const call = (body: Buffer, encoding: string | undefined) =>
    rawGrpcCall(session, LIST, body, {
      authorization: `Bearer ${s.adminSecret}`,
      ...(encoding !== undefined && { encoding }),
    });

  it.each(['gzip', 'deflate'])(
    'grpc-encoding %s with a payload that does not decompress: INVALID_ARGUMENT',
    async (encoding) => {
      const payload = Buffer.from('not compressed at all');
      expect(await call(grpcEnvelope(1, payload), encoding)).toEqual({
        status: grpc.status.INVALID_ARGUMENT,
        message: 'request message could not be decompressed',
      });
    },
  );

  it('a gzip stream cut short: INVALID_ARGUMENT', async () => {
    const z = gzipSync(listRequest()).subarray(0, 12);
    expect(await call(grpcEnvelope(1, z), 'gzip')).toEqual({
      status: grpc.status.INVALID_ARGUMENT,
      message: 'request message could not be decompressed',
    });
  });

  it('valid gzip of garbage: INVALID_ARGUMENT from the decoder', async () => {
    const z = gzipSync(Buffer.from([0xff, 0xff, 0xff]));
    const r = await call(grpcEnvelope(1, z), 'gzip');
    expect(r.status).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('valid gzip that decompresses beyond the 64 KiB message limit: RESOURCE_EXHAUSTED', async () => {
    const z = gzipSync(Buffer.alloc(100 * 1024));
    const r = await call(grpcEnvelope(1, z), 'gzip');
    expect(r).toEqual({
      status: grpc.status.RESOURCE_EXHAUSTED,
      message: 'Received message that decompresses to a size larger than 65536',
    });
  });

  it('grpc-encoding br (not supported): UNIMPLEMENTED, as the gRPC compression spec requires', async () => {
    const payload = listRequest();
    expect(await call(grpcEnvelope(1, payload), 'br')).toEqual({
      status: grpc.status.UNIMPLEMENTED,
      message: 'Received message compressed with unsupported encoding "br"',
    });
  });

  it('compressed flag without grpc-encoding: the payload is read as uncompressed', async () => {
    const payload = listRequest();
    expect((await call(grpcEnvelope(1, payload), undefined)).status).toBe(0);
    const garbage = Buffer.from([0xff, 0xff, 0xff]);
    expect((await call(grpcEnvelope(1, garbage), undefined)).status).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('a valid gzip-compressed request from grpc-js (grpc.default_compression_algorithm 2) is served', async () => {
    const g = grpcClient(TokenService, s.grpcAddress, { 'grpc.default_compression_algorithm': 2 });
    try {
      const r = (await g.call('listTokens', { pageSize: 1 }, { token: s.adminSecret })) as { tokens: unknown[] };
      expect(r.tokens.length).toBe(1);
    } finally {
      g.close();
    }
  });

  it('the same gzip frame sent raw is served too', async () => {
    const z = gzipSync(listRequest());
    expect((await call(grpcEnvelope(1, z), 'gzip')).status).toBe(0);
  });
});
