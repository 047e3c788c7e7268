import { Code, ConnectError, createConnectRouter, createContextValues } from '@connectrpc/connect';
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';
import type { UniversalHandler } from '@connectrpc/connect/protocol';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { AccessLog, AccessRecord } from '../api/access-log.js';
import { callMetaKey } from '../api/call-meta.js';
import { httpCallMeta } from './dpop-request.js';
import { CallTracker } from '../api/call-tracker.js';
import { connectRoutes, type MountedService } from '../api/services.js';
import type { AppContext } from '../app/context.js';
import { withDecodeErrorsAsInvalidArgument } from './decode-error-shim.js';
import { HttpPortServer } from './http-port-server.js';
import { oauthHandler, type HttpExtras } from './oauth-routes.js';

/** Largest RPC message accepted on the HTTP port. */
const MAX_HTTP_MESSAGE_BYTES = 64 * 1024;

/**
 * The HTTP port's requests: connect-node serves Connect (JSON and binary) and gRPC-Web for the
 * same handlers as the gRPC port; every other path goes to the OAuth routes, /healthz and
 * /metrics. This is connect-node's `connectNodeAdapter` with each handler wrapped by the
 * decode-error shim.
 */
export function httpRequestHandler(
  app: AppContext,
  services: MountedService[],
  ping: () => Promise<void>,
  tracker = new CallTracker(),
  extras: HttpExtras = {},
): RequestListener {
  const oauth = oauthHandler(app, ping, extras);
  const router = createConnectRouter({
    readMaxBytes: MAX_HTTP_MESSAGE_BYTES,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  connectRoutes(services)(router);
  const paths = new Map<string, UniversalHandler>(
    router.handlers.map((h) => [h.requestPath, withDecodeErrorsAsInvalidArgument(h)]),
  );
  const access = extras.access;
  return (req: IncomingMessage, res: ServerResponse) => {
    const handler = paths.get((req.url ?? '').split('?', 1)[0]!);
    const rec = access && beginAccess(access, req, res, handler === undefined);
    if (!handler) {
      oauth(req, res, rec);
      return;
    }
    if (rec) rec.target = handler.requestPath.slice(1);
    const done = handler.method.methodKind === 'unary' ? tracker.startUnary() : undefined;
    if (done) res.once('close', done);
    const uReq = universalRequestFromNodeRequest(
      req,
      res,
      undefined,
      createContextValues().set(callMetaKey, httpCallMeta(req, rec)),
    );
    handler(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        app.log.error('rpc handler failed', { rpc: `${handler.service.typeName}/${handler.method.name}` });
      });
  };
}

/**
 * Starts the access record of a request on the HTTP port: its request id goes into the response
 * headers at once (`x-request-id`), and its line is written when the response closes (finished,
 * or cut). RPCs log `rpc` (their code comes from the handlers, src/api/services.ts); the other
 * routes log `route` and the HTTP method.
 */
function beginAccess(access: AccessLog, req: IncomingMessage, res: ServerResponse, route: boolean): AccessRecord {
  const rec = access.begin(
    req.headers.authorization,
    req.socket.remoteAddress ?? null,
    req.headers['x-request-id'],
    req.headers.traceparent,
  );
  res.setHeader('x-request-id', rec.requestId);
  res.once('close', () => access.write(rec, 'http', res.statusCode, route ? req.method : undefined));
  return rec;
}

/** The HTTP port's server, and the one call that puts the application behind it. */
export interface HttpPort {
  server: HttpPortServer;
  /** Serves `handle` from now on; until then every request gets 503 `{"status":"starting"}`. */
  serve(handle: RequestListener): void;
}

/**
 * The HTTP port's server (HTTP/1.1 and HTTP/2; TLS when configured) with its timeouts, created
 * before the application so that start-up can bind it first and derive the issuer from the port
 * it got.
 */
export function createHttpServer(tls?: { cert: Buffer; key: Buffer }): HttpPort {
  let handle: RequestListener = starting;
  // Node's HTTP/2 compatibility request and response carry what the handlers use (method, url,
  // headers, socket.remoteAddress, the body as a stream; writeHead, setHeader, end) and connect-node
  // takes both kinds; the handlers are typed for HTTP/1.1 only to keep their signatures plain.
  const server = new HttpPortServer(
    (req, res) => handle(req as IncomingMessage, res as ServerResponse),
    { handshakeMs: HANDSHAKE_TIMEOUT_MS, headersMs: 10_000, requestMs: 30_000 },
    tls,
  );
  return {
    server,
    serve: (h) => {
      handle = h;
    },
  };
}

/** The answer while start-up is still building the application behind a bound port. */
function starting(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1', 'cache-control': 'no-store' });
  res.end('{"status":"starting"}');
}

/** A TLS handshake (and, in plain text, a connection's first bytes) must arrive within this. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
