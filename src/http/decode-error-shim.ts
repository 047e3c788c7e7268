import type { UniversalHandler, UniversalServerResponse } from '@connectrpc/connect/protocol';

/**
 * connect-es reports a request body that fails protobuf decoding as `internal` ("parse binary:
 * …", protocol/serialization.js), where JSON decode failures are `invalid_argument`, and likewise
 * an enveloped request (Connect streaming, gRPC-Web) whose compressed flag is set though no
 * encoding was negotiated ("received compressed envelope, …", protocol/envelope.js). A client
 * sending garbage made a bad request, so Rotor answers `invalid_argument` on every protocol
 * (the gRPC port does the same in grpc-server.ts). This wrapper rewrites exactly those errors and
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

const UNNEGOTIATED_COMPRESSION = 'received compressed envelope, but do not know how to decompress';

/** The invalid_argument message for one of connect-es's `internal` decode errors; undefined for any other error. */
function badRequestMessage(code: string | undefined, message: string | undefined): string | undefined {
  if (code !== 'internal' || message === undefined) return undefined;
  if (message.startsWith('parse binary:')) return `request is not a valid message: ${message.slice(14)}`;
  if (message === UNNEGOTIATED_COMPRESSION)
    return 'request is not a valid message: its compressed flag is set, but no content encoding was negotiated';
  return undefined;
}

function rewriteConnectError(res: UniversalServerResponse, body: Uint8Array): UniversalServerResponse {
  let parsed: { code?: string; message?: string };
  try {
    parsed = JSON.parse(new TextDecoder().decode(body)) as typeof parsed;
  } catch {
    return { ...res, body: once(body) };
  }
  const message = badRequestMessage(parsed.code, parsed.message);
  if (message === undefined) return { ...res, body: once(body) };
  const text = JSON.stringify({ code: 'invalid_argument', message });
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
  const message = badRequestMessage(error?.code, error?.message);
  if (message === undefined) return chunk;
  const payload = new TextEncoder().encode(
    JSON.stringify({ ...parsed, error: { ...error, code: 'invalid_argument', message } }),
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
      const grpcMessage = /^grpc-message: ?(.*?)\r?$/m.exec(text)?.[1];
      const message = /^grpc-status: ?13\r?$/m.test(text)
        ? badRequestMessage('internal', grpcMessage === undefined ? undefined : safeDecode(grpcMessage))
        : undefined;
      if (message !== undefined) {
        const fixed = text
          .replace(/^grpc-status: ?13/m, 'grpc-status: 3')
          .replace(
            /^grpc-message: ?.*?(\r?)$/m,
            (_, cr: string) => `grpc-message: ${encodeURIComponent(message)}${cr}`,
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

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
