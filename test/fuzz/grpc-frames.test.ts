/**
 * Fuzzes the gRPC port with raw HTTP/2 (node:http2, content-type application/grpc): random bytes
 * as a length-prefixed message to every TokenService and TokenExchangeService method, and broken
 * framing (compressed flag without compression, a length prefix that lies, trailing bytes). The
 * grpc-status is never INTERNAL (13) or UNKNOWN, only a code src/api/connect-errors.ts produces,
 * a refused call writes nothing, and the port still serves a valid call afterwards.
 */
import * as http2 from 'node:http2';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenExchangeService } from '../../src/gen/rotor/v1/token_exchange_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { grpcClient } from '../support/grpc-client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { DOCUMENTED_CODES, expectServing, fuzzParams, grpcOutcome, rowCounts } from './support.js';

const PATHS = [...TokenService.methods, ...TokenExchangeService.methods].map((m) => `/${m.parent.typeName}/${m.name}`);

/** A gRPC request body: one frame `flag | length (4 bytes, big endian) | payload`, possibly lying. */
const frame = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 200 }).map((p) => envelope(0, p.length, p)) },
  // Compressed flag set, though no grpc-encoding was negotiated.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 50 }).map((p) => envelope(1, p.length, p)) },
  // A length prefix that does not match the payload (the stream then ends early or has extra bytes).
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.uint8Array({ maxLength: 50 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.integer({ min: 0, max: 255 }),
      )
      .map(([p, n, flag]) => envelope(flag, n, p)),
  },
  // Not a frame at all.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b)) },
  // Two frames for a unary method.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.uint8Array({ maxLength: 20 }), fc.uint8Array({ maxLength: 20 }))
      .map(([a, b]) => Buffer.concat([envelope(0, a.length, a), envelope(0, b.length, b)])),
  },
);

function envelope(flag: number, length: number, payload: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flag, 0);
  head.writeUInt32BE(length, 1);
  return Buffer.concat([head, payload]);
}

/** Bearer metadata: the admin's, none, or garbage. */
const bearer = fc.constantFrom<'admin' | string | undefined>('admin', undefined, 'Bearer rtr_prj_x', 'Bearer ', 'x');

describe('fuzz: gRPC frames on sqlite', () => {
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

  /** Sends one request; resolves with the grpc-status (from trailers, or trailers-only headers). */
  function call(path: string, body: Buffer, auth: string | undefined): Promise<{ status: number; message: string }> {
    return new Promise((resolve, reject) => {
      const headers: http2.OutgoingHttpHeaders = {
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
      };
      if (auth !== undefined) headers.authorization = auth === 'admin' ? `Bearer ${s.adminSecret}` : auth;
      const req = session.request(headers);
      const outcome = grpcOutcome(req);
      req.on('end', () => {
        const { status, message } = outcome;
        if (status === undefined) reject(new Error(`${path}: no grpc-status`));
        else resolve({ status, message });
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it.each(PATHS)('%s answers random frames with documented codes only', async (path) => {
    await fc.assert(
      fc.asyncProperty(frame, bearer, async (body, auth) => {
        // The admin presenting itself to RotateToken could rotate the fixture's own token.
        if (path.endsWith('/RotateToken') && auth === 'admin') auth = undefined;
        const before = await rowCounts(s);
        const r = await call(path, body, auth);
        if (r.status !== 0) {
          // grpc-js itself answers a unary call without a message, or with two, UNIMPLEMENTED (its text says
          // "server streaming method"), before Rotor sees the call: not a Rotor code, but not INTERNAL.
          if (!(r.status === 12 && /^Received (no|a second) request message/.test(r.message)))
            expect(DOCUMENTED_CODES, `${r.status} ${r.message}`).toContain(r.status);
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
