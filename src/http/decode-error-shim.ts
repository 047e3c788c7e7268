import type { UniversalHandler, UniversalServerResponse } from '@connectrpc/connect/protocol';

/**
 * connect-es reports a request body that fails protobuf decoding as `internal` ("parse binary:
 * …", protocol/serialization.js), where JSON decode failures are `invalid_argument`. A client
 * sending garbage made a bad request, so Rotor answers `invalid_argument` on every protocol
 * (the gRPC port does the same in grpc-server.ts). This wrapper rewrites exactly that error and
 * nothing else: Connect unary error bodies, Connect streaming end-stream messages (WatchExpiry) and
 * gRPC-Web trailer frames.
 */
export function withDecodeErrorsAsInvalidArgument(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: Parameters<UniversalHandler>[0]): Promise<UniversalServerResponse> => {
    const res = await handler(req);
    if (res.body === undefined) return res;
    if (res.status >= 400) return rewriteConnectError(res, await collect(res.body));
    return { ...res, body: rewriteTrailers(res.body) };
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    service: handler.service,
    method: handler.method,
    requestPath: handler.requestPath,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
  });
}

/** Error bodies of unary Connect calls are one small JSON document. */
async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of body) parts.push(p);
  return Buffer.concat(parts);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

function rewriteConnectError(res: UniversalServerResponse, body: Uint8Array): UniversalServerResponse {
  let parsed: { code?: string; message?: string };
  try {
    parsed = JSON.parse(new TextDecoder().decode(body)) as typeof parsed;
  } catch {
    return { ...res, body: once(body) };
  }
  if (parsed.code !== 'internal' || !parsed.message?.startsWith('parse binary:')) return { ...res, body: once(body) };
  const text = JSON.stringify({
    code: 'invalid_argument',
    message: `request is not a valid message: ${parsed.message.slice(14)}`,
  });
  const bytes = new TextEncoder().encode(text);
  const header = new Headers(res.header);
  header.set('content-length', String(bytes.byteLength));
  return { ...res, status: 400, header, body: once(bytes) };
}

/** A Connect end-stream message (flag 0x02, uncompressed): `{"error": {"code", "message"}}`. */
function rewriteEndStream(chunk: Uint8Array): Uint8Array {
  let parsed: { error?: { code?: string; message?: string } };
  try {
    parsed = JSON.parse(new TextDecoder().decode(chunk.subarray(5))) as typeof parsed;
  } catch {
    return chunk;
  }
  const error = parsed.error;
  if (error?.code !== 'internal' || !error.message?.startsWith('parse binary:')) return chunk;
  const payload = new TextEncoder().encode(
    JSON.stringify({
      ...parsed,
      error: {
        ...error,
        code: 'invalid_argument',
        message: `request is not a valid message: ${error.message.slice(14)}`,
      },
    }),
  );
  const frame = new Uint8Array(5 + payload.length);
  frame[0] = chunk[0]!;
  new DataView(frame.buffer).setUint32(1, payload.length);
  frame.set(payload, 5);
  return frame;
}

async function* rewriteTrailers(body: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    if (chunk.length >= 5 && chunk[0] === 0x02) {
      yield rewriteEndStream(chunk);
      continue;
    }
    // A gRPC-Web trailer frame: flag 0x80, 4-byte length, then HTTP/1-style header lines.
    if (chunk.length >= 5 && (chunk[0]! & 0x80) === 0x80) {
      const text = new TextDecoder().decode(chunk.subarray(5));
      if (/^grpc-status: ?13\r?$/m.test(text) && /^grpc-message: ?parse%20binary/m.test(text)) {
        const fixed = text
          .replace(/^grpc-status: ?13/m, 'grpc-status: 3')
          .replace(
            /^grpc-message: ?parse%20binary(%3A|:)/m,
            'grpc-message: request%20is%20not%20a%20valid%20message%3A',
          );
        const payload = new TextEncoder().encode(fixed);
        const frame = new Uint8Array(5 + payload.length);
        frame[0] = chunk[0]!;
        new DataView(frame.buffer).setUint32(1, payload.length);
        frame.set(payload, 5);
        yield frame;
        continue;
      }
    }
    yield chunk;
  }
}
