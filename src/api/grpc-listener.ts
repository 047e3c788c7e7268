import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../app/logger-port.js';
import { peerKey } from './peer-key.js';

/**
 * Limits on connections to the gRPC port (README: "Connection limits"). The first three are
 * applied here, before grpc-js sees a connection; the others are grpc-js server options
 * (createGrpcServer).
 */
export interface GrpcConnectionLimits {
  /** From accept until the HTTP/2 client preface has arrived (after the TLS handshake, with TLS). */
  handshakeTimeoutMs: number;
  /** Connections one peer (IPv4 address, IPv6 /64) may hold at once; 0: no limit. */
  maxConnectionsPerPeer: number;
  /** Connections the port holds at once, from everyone; 0: no limit. */
  maxConnections: number;
  /** A connection without an open stream for this long gets GOAWAY and is closed. */
  idleTimeoutMs: number;
  /** A connection this old (±10 %) gets GOAWAY; clients reconnect. */
  maxConnectionAgeMs: number;
  /** After that GOAWAY, how long calls still open may run before the connection is cut. */
  maxConnectionAgeGraceMs: number;
  /** Streams (calls) one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
}

/** The gRPC port, listening. */
export interface GrpcListener {
  port: number;
  /**
   * Stops accepting and cuts connections grpc-js never received (TLS handshake still running);
   * grpc-js's own shutdown closes the rest. Resolves once every connection has closed.
   */
  close(): Promise<void>;
  /** Cuts every connection still open (forced shutdown). */
  destroyAll(): void;
}

/**
 * The HTTP/2 client preface is 24 octets of magic and a SETTINGS frame (RFC 9113 §3.4), whose
 * header alone is 9 octets: a connection that has not sent this many bytes has not sent its
 * preface.
 */
const PREFACE_BYTES = 24 + 9;

/**
 * Accepts the gRPC port's TCP connections itself and hands them to grpc-js through its public
 * connection injector (`Server.createConnectionInjector`), because grpc-js owns the HTTP/2 server
 * it creates on bindAsync and exposes neither its sockets, its sessions nor a handshake timeout.
 * Owning the accept is what lets the port:
 *
 * - refuse a connection past the per-peer or process-wide limit at once, before any TLS or HTTP/2
 *   work (a peer holding its maximum cannot exhaust the process's file descriptors);
 * - cut a connection that has not delivered the HTTP/2 preface within the handshake timeout
 *   (`socket.bytesRead`, which counts what the HTTP/2 session read from the socket too). grpc-js's
 *   idle timeout takes over once the preface is in.
 *
 * With TLS the handshake is done here too, by a `tls.Server` this function owns (same certificate,
 * ALPN h2 only, no client certificate, as grpc-js's `createSsl(null, …, false)` did): the
 * decrypted stream is what must carry the preface, and grpc-js's secure server would hide it. The
 * TLS socket is then injected into an injector with insecure credentials, which means "grpc-js
 * adds no TLS of its own", not plain text on the wire: it is the same TLSSocket an
 * `http2.createSecureServer` would hand its session.
 */
export function listenGrpc(
  server: grpc.Server,
  options: {
    host: string;
    port: number;
    tls: { cert: Buffer; key: Buffer } | undefined;
    limits: GrpcConnectionLimits;
    log: Logger;
  },
): Promise<GrpcListener> {
  const { limits, log } = options;
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const tlsServer = options.tls
    ? createTlsServer({
        cert: options.tls.cert,
        key: options.tls.key,
        ALPNProtocols: ['h2'],
        handshakeTimeout: limits.handshakeTimeoutMs,
      })
    : undefined;
  /** Every open connection; the value is its decrypted TLS socket once the handshake is done. */
  const sockets = new Map<Socket, TLSSocket | undefined>();
  /** TLS sockets between 'connection' and 'secureConnection', by remote address and port. */
  const handshaking = new Map<string, Socket>();
  const perPeer = new Map<string, number>();
  const warn = rateLimited(log);

  const refuse = (socket: Socket, peer: string, reason: 'peer_limit' | 'connection_limit') => {
    // resetAndDestroy: an RST tells the client at once, and leaves no TIME_WAIT behind here.
    socket.resetAndDestroy();
    warn(`grpc connection refused: ${reason}`, {
      peer,
      limit: reason === 'peer_limit' ? limits.maxConnectionsPerPeer : limits.maxConnections,
    });
  };

  const accept = (socket: Socket) => {
    const peer = peerKey(socket.remoteAddress);
    if (limits.maxConnections > 0 && sockets.size >= limits.maxConnections)
      return refuse(socket, peer, 'connection_limit');
    const held = perPeer.get(peer) ?? 0;
    if (limits.maxConnectionsPerPeer > 0 && held >= limits.maxConnectionsPerPeer)
      return refuse(socket, peer, 'peer_limit');
    perPeer.set(peer, held + 1);
    sockets.set(socket, undefined);
    const connection = `${socket.remoteAddress}|${socket.remotePort}`;
    const deadline = setTimeout(() => {
      const stream = tlsServer ? sockets.get(socket) : socket;
      if (stream !== undefined && stream.bytesRead >= PREFACE_BYTES) return;
      socket.destroy();
      warn('grpc connection cut: no HTTP/2 preface within the handshake timeout', {
        peer,
        timeout_ms: limits.handshakeTimeoutMs,
      });
    }, limits.handshakeTimeoutMs);
    socket.once('close', () => {
      clearTimeout(deadline);
      handshaking.delete(connection);
      sockets.delete(socket);
      const left = (perPeer.get(peer) ?? 1) - 1;
      if (left === 0) perPeer.delete(peer);
      else perPeer.set(peer, left);
    });
    // A reset by the peer; 'close' follows and does the bookkeeping.
    socket.on('error', () => undefined);
    if (!tlsServer) {
      injector.injectConnection(socket);
      return;
    }
    handshaking.set(connection, socket);
    tlsServer.emit('connection', socket);
  };

  tlsServer?.on('secureConnection', (tlsSocket: TLSSocket) => {
    const key = `${tlsSocket.remoteAddress}|${tlsSocket.remotePort}`;
    const socket = handshaking.get(key);
    handshaking.delete(key);
    if (socket === undefined || !sockets.has(socket)) {
      tlsSocket.destroy();
      return;
    }
    sockets.set(socket, tlsSocket);
    injector.injectConnection(tlsSocket);
  });

  const listener = createNetServer(accept);
  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(options.port, options.host, () => {
      listener.off('error', reject);
      // Accept errors (EMFILE when out of file descriptors) leave the listener working.
      listener.on('error', (e: NodeJS.ErrnoException) =>
        warn('grpc accept failed', { code: e.code, error: e.message }),
      );
      const closed = new Promise<void>((done) => listener.once('close', () => done()));
      resolve({
        port: (listener.address() as AddressInfo).port,
        close() {
          listener.close();
          for (const [socket, tlsSocket] of sockets) if (tlsServer && tlsSocket === undefined) socket.destroy();
          return closed;
        },
        destroyAll() {
          for (const socket of sockets.keys()) socket.destroy();
        },
      });
    });
  });
}

/**
 * A warning per message at most once a second, counting the ones it held back: a flood of refused
 * connections must not become a flood of log lines.
 */
function rateLimited(log: Logger): (message: string, fields: Record<string, unknown>) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (message, fields) => {
    const now = Date.now();
    const seen = last.get(message);
    if (seen && now - seen.at < 1000) {
      seen.suppressed++;
      return;
    }
    log.warn(message, { ...fields, suppressed: seen?.suppressed ?? 0 });
    last.set(message, { at: now, suppressed: 0 });
  };
}
