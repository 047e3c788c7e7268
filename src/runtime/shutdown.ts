import type * as grpc from '@grpc/grpc-js';
import type { CallTracker } from '../api/call-tracker.js';
import type { GrpcListener } from '../api/grpc-listener.js';
import type { HealthState } from '../app/health-state.js';
import type { HttpPortServer } from '../http/http-port-server.js';

/**
 * After the unary calls have finished, how long shutdown lets streams deliver their UNAVAILABLE
 * before it cuts what is left (a client that stopped reading cannot receive it anyway).
 */
const STREAM_FLUSH_MS = 1000;

/** What a graceful stop closes, in the order it closes them. */
export interface ShutdownParts {
  /** The standard health service: NOT_SERVING first; its watches end once unary calls have. */
  health: Pick<HealthState, 'drain' | 'close'>;
  /** Stops what produces work or events (the WatchExpiry feed, which ends every stream with UNAVAILABLE; the scheduler; retention). */
  stopWork(): Promise<void>;
  grpcServer: grpc.Server;
  grpcListener: GrpcListener;
  /** The HTTP port (HTTP/1.1 connections and HTTP/2 sessions), with `http.Server`'s drain methods. */
  httpServer: Pick<HttpPortServer, 'close' | 'closeIdleConnections' | 'closeAllConnections'>;
  tracker: CallTracker;
  /** Releases what is left once no call runs (metrics timers, the database). */
  release(): Promise<void>;
}

/**
 * Graceful stop: turns the standard health service NOT_SERVING (a health Watch hears it at once;
 * a load balancer stops sending), stops the background work and ends every WatchExpiry stream with UNAVAILABLE,
 * stops accepting calls, lets unary calls in flight finish for up to `graceMs` (streams get
 * STREAM_FLUSH_MS after them, not the whole grace), then cuts what is left, and releases the
 * rest (the database last).
 */
export async function shutdown(parts: ShutdownParts, graceMs: number): Promise<void> {
  const { grpcServer, grpcListener, httpServer, tracker } = parts;
  parts.health.drain();
  await parts.stopWork();
  const grpcClosed = grpcListener.close();
  const grpcDone = new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
  const httpDone = new Promise<void>((resolve) => httpServer.close(() => resolve()));
  const allDone = Promise.all([grpcDone, httpDone]);
  // Connections whose streams just ended become idle; close them as they do.
  const idleSweep = setInterval(() => httpServer.closeIdleConnections(), 50);
  httpServer.closeIdleConnections();
  const timers: NodeJS.Timeout[] = [];
  const after = (ms: number) => new Promise<void>((resolve) => timers.push(setTimeout(resolve, ms)));
  const cut = await Promise.race([
    allDone.then(() => false),
    after(graceMs).then(() => true),
    tracker.unaryDrained().then(() => {
      // Health watches have said NOT_SERVING; ending them lets the ports close without the flush wait.
      parts.health.close();
      return Promise.race([allDone.then(() => false), after(STREAM_FLUSH_MS).then(() => true)]);
    }),
  ]);
  parts.health.close();
  if (cut) {
    grpcServer.forceShutdown();
    grpcListener.destroyAll();
    httpServer.closeAllConnections();
  }
  for (const t of timers) clearTimeout(t);
  clearInterval(idleSweep);
  await allDone;
  // grpc-js has closed its sessions; what is left never became one (a TLS handshake in progress).
  grpcListener.destroyAll();
  await grpcClosed;
  await parts.release();
}
