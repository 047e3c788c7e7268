import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from 'node:http';
import {
  constants as h2,
  createServer as createHttp2Server,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';

/** A request handler as both HTTP versions call it (Node's HTTP/2 compatibility API). */
export type PortRequestListener = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** The HTTP port's timeouts (README: "Interfaces"). */
export interface HttpPortTimeouts {
  /** From accept until the TLS handshake is done and the first bytes (plain text) or the HTTP/2 SETTINGS have arrived. */
  handshakeMs: number;
  /** HTTP/1.1: until the request headers are in. */
  headersMs: number;
  /** Both versions: until the whole request (headers and body) is in. */
  requestMs: number;
}

/**
 * The HTTP/2 connection preface (RFC 9113 §3.4). In plain text a client speaking HTTP/2 with prior
 * knowledge (h2c) starts with it; an HTTP/1.1 request line never does.
 */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
const MAX_CONCURRENT_STREAMS = 100;

/**
 * The HTTP port: HTTP/1.1 and HTTP/2 on one listener, for the same handler.
 *
 * Node has no server for both in plain text (`http2.createServer({ allowHTTP1 })` falls back to
 * HTTP/1.1 through ALPN only), so this owns the accept: a plain-text connection is sniffed until
 * its first bytes show whether they are the HTTP/2 preface, then handed (bytes put back) to an
 * `http.Server` or an `http2` server through their 'connection' event. With TLS, ALPN decides
 * (h2, else http/1.1) after a `tls.Server` owned here has done the handshake, as on the gRPC port
 * (src/api/grpc-listener.ts). Owning the accept also keeps every raw socket in reach, so a forced
 * stop cuts connections that never got past the handshake.
 *
 * The drain methods have `http.Server`'s semantics over both versions: close() stops accepting,
 * sends every HTTP/2 session GOAWAY (session.close(): streams open may finish) and closes idle
 * HTTP/1.1 connections; closeIdleConnections() does the latter again; closeAllConnections() cuts
 * everything.
 */
export class HttpPortServer {
  private readonly listener: NetServer;
  private readonly http1;
  private readonly http2: Http2Server;
  private readonly tlsServer;
  private readonly sockets = new Set<Socket>();
  /** Plain-text connections whose first bytes have not arrived yet. */
  private readonly sniffing = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  private closing = false;

  constructor(
    handler: PortRequestListener,
    private readonly timeouts: HttpPortTimeouts,
    tls?: { cert: Buffer; key: Buffer },
  ) {
    this.http1 = createHttp1Server(handler);
    this.http1.headersTimeout = timeouts.headersMs;
    this.http1.requestTimeout = timeouts.requestMs;
    this.http2 = createHttp2Server({ settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } }, handler);
    this.http2.on('session', (session) => this.track(session));
    this.http2.on('stream', (stream) => this.limitRequest(stream));
    this.tlsServer = tls
      ? createTlsServer({
          cert: tls.cert,
          key: tls.key,
          ALPNProtocols: ['h2', 'http/1.1'],
          handshakeTimeout: timeouts.handshakeMs,
        })
      : undefined;
    this.tlsServer?.on('secureConnection', (socket: TLSSocket) =>
      (socket.alpnProtocol === 'h2' ? this.http2 : this.http1).emit('connection', socket),
    );
    // A failed handshake: the client hears the alert; nothing to log per connection.
    this.tlsServer?.on('tlsClientError', (_e, socket) => socket.destroy());
    this.listener = createNetServer((socket) => this.accept(socket));
  }

  /** Listens; resolves with the port bound (`0` picks a free one). */
  listen(port: number, host: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(port, host, () => {
        this.listener.off('error', reject);
        // http.Server tracks its connections (headers and request timeouts, closeIdleConnections)
        // from its 'listening' event; it never listens itself.
        this.http1.emit('listening');
        resolve((this.listener.address() as AddressInfo).port);
      });
    });
  }

  /** Stops accepting and starts the drain; `done` runs once every connection has closed. */
  close(done?: () => void): void {
    this.closing = true;
    this.listener.close(() => done?.());
    // Stops the HTTP/1.1 timeout checks and closes idle connections (it has no listener to close).
    this.http1.close();
    for (const session of this.sessions) session.close();
    this.cutSniffing();
  }

  /** HTTP/1.1 connections without a request in progress, and connections that never sent a byte, close. */
  closeIdleConnections(): void {
    this.http1.closeIdleConnections();
    if (this.closing) this.cutSniffing();
  }

  /** Cuts every connection: HTTP/1.1, HTTP/2 sessions, and sockets still in the TLS handshake. */
  closeAllConnections(): void {
    this.http1.closeAllConnections();
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // A reset by the peer; 'close' follows.
    socket.on('error', () => undefined);
    if (this.tlsServer) {
      this.tlsServer.emit('connection', socket);
      return;
    }
    this.sniff(socket);
  }

  /** Reads until the first bytes tell HTTP/2 (the preface) from HTTP/1.1, then hands the socket over. */
  private sniff(socket: Socket): void {
    this.sniffing.add(socket);
    const chunks: Buffer[] = [];
    let length = 0;
    const deadline = setTimeout(() => socket.destroy(), this.timeouts.handshakeMs);
    const settle = () => {
      clearTimeout(deadline);
      socket.off('readable', onReadable);
      this.sniffing.delete(socket);
    };
    socket.once('close', settle);
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        chunks.push(chunk);
        length += chunk.length;
      }
      const head = Buffer.concat(chunks, length);
      const n = Math.min(head.length, PREFACE.length);
      const h2Prefix = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2Prefix && n < PREFACE.length) return;
      settle();
      socket.off('close', settle);
      if (head.length > 0) socket.unshift(head);
      (h2Prefix ? this.http2 : this.http1).emit('connection', socket);
    };
    socket.on('readable', onReadable);
  }

  private cutSniffing(): void {
    for (const socket of this.sniffing) socket.destroy();
  }

  /**
   * An HTTP/2 session must send its SETTINGS within the handshake timeout; one that arrives while
   * the port is closing gets GOAWAY at once.
   */
  private track(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', () => undefined);
    const deadline = setTimeout(() => session.destroy(), this.timeouts.handshakeMs);
    session.once('remoteSettings', () => clearTimeout(deadline));
    session.once('close', () => clearTimeout(deadline));
    if (this.closing) session.close();
  }

  /** HTTP/2's counterpart of `requestTimeout`: a request whose body has not all arrived in time is cancelled. */
  private limitRequest(stream: ServerHttp2Stream): void {
    if (stream.endAfterHeaders) return;
    const deadline = setTimeout(() => stream.close(h2.NGHTTP2_CANCEL), this.timeouts.requestMs);
    stream.once('end', () => clearTimeout(deadline));
    stream.once('close', () => clearTimeout(deadline));
  }
}
