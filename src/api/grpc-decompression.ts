import * as grpc from '@grpc/grpc-js';
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors.js';

/** The answer to a request message that claims an encoding it is not in (docs/bad-input.md). */
export const UNDECOMPRESSABLE = 'request message could not be decompressed';

/** What grpc-js 1.14 rejects a failed gzip / deflate decompression with (server-interceptors.js). */
const GRPC_JS_DECOMPRESS_FAILED = 'Failed to decompress message';

type Decompress = (this: unknown, message: Buffer, encoding: string) => Buffer | Promise<Buffer>;

let installed = false;

/**
 * Makes the gRPC port answer a request message whose `grpc-encoding` (gzip, deflate) does not
 * match its bytes INVALID_ARGUMENT "request message could not be decompressed" instead of
 * grpc-js's INTERNAL "Failed to decompress message": the client sent a bad message, the server
 * did not fail.
 *
 * Why here and not in a server interceptor: grpc-js decompresses in the call at the bottom of the
 * interceptor chain (`BaseServerInterceptingCall.decompressAndMaybePush`) and sends that status
 * itself, so no interceptor ever sees it; nor does the handler, which never gets the message.
 * The hook is its `decompressMessage`, wrapped once per process: uncompressed messages (grpc-js
 * passes them through the same method as `identity`) pay one extra function call and no
 * allocation; only a rejected decompression is rewritten, every other answer (RESOURCE_EXHAUSTED
 * for a message that decompresses beyond the limit, UNIMPLEMENTED for an encoding grpc-js lacks)
 * is grpc-js's own. `@grpc/grpc-js` is pinned; a version without that method fails the server's
 * start here rather than silently answering INTERNAL again (test/fuzz/grpc-frames.test.ts).
 */
export function installDecompressionStatus(): void {
  if (installed) return;
  const proto = BaseServerInterceptingCall.prototype as unknown as { decompressMessage?: Decompress };
  const original = proto.decompressMessage;
  if (typeof original !== 'function') {
    throw new Error(
      '@grpc/grpc-js has no BaseServerInterceptingCall.decompressMessage: update src/api/grpc-decompression.ts',
    );
  }
  proto.decompressMessage = function (this: unknown, message: Buffer, encoding: string) {
    const out = original.call(this, message, encoding);
    return out instanceof Promise ? out.catch(rewrite) : out;
  };
  installed = true;
}

function rewrite(e: unknown): never {
  const s = e as { code?: unknown; details?: unknown } | null;
  if (s?.code === grpc.status.INTERNAL && s.details === GRPC_JS_DECOMPRESS_FAILED) {
    throw { code: grpc.status.INVALID_ARGUMENT, details: UNDECOMPRESSABLE };
  }
  throw e;
}
