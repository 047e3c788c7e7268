import type * as http2 from 'node:http2';

/**
 * A gRPC (or Connect streaming) envelope: `flags | length (4 bytes, big endian) | payload`. The
 * length defaults to the payload's; the fuzzers give a wrong one on purpose.
 */
export function grpcEnvelope(flags: number, payload: Uint8Array, length = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([head, payload]);
}

/**
 * Reads a raw gRPC call's outcome: `grpc-status` and `grpc-message` from its headers (a
 * trailers-only answer) or its trailers; the body is drained. Read `status` once the stream ends.
 */
export function grpcOutcome(req: http2.ClientHttp2Stream): { status: number | undefined; message: string } {
  const outcome: { status: number | undefined; message: string } = { status: undefined, message: '' };
  const take = (h: http2.IncomingHttpHeaders) => {
    if (h['grpc-status'] === undefined) return;
    outcome.status = Number(h['grpc-status']);
    outcome.message = decodeURIComponent(String(h['grpc-message'] ?? ''));
  };
  req.on('response', take);
  req.on('trailers', take);
  req.on('data', () => undefined);
  return outcome;
}

/**
 * One unary gRPC request sent as raw HTTP/2 bytes on `session` (what a grpc-js client cannot be
 * made to send: bad frames, a chosen `grpc-encoding`), with an `authorization` header when given.
 * Resolves with the call's status (undefined when the stream ended without one) and message.
 */
export function rawGrpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer,
  headers: { authorization?: string; encoding?: string } = {},
): Promise<{ status: number | undefined; message: string }> {
  return new Promise((resolve, reject) => {
    const request: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    if (headers.authorization !== undefined) request.authorization = headers.authorization;
    if (headers.encoding !== undefined) request['grpc-encoding'] = headers.encoding;
    const req = session.request(request);
    const outcome = grpcOutcome(req);
    req.on('end', () => resolve({ ...outcome }));
    req.on('error', reject);
    req.end(body);
  });
}
