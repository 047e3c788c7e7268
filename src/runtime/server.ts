import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CallTracker } from '../api/call-tracker.js';
import { bindGrpc, createGrpcServer } from '../api/grpc-server.js';
import { rotorServices } from '../api/services.js';
import type { AppContext, Logger } from '../app/context.js';
import { createTokenKeys } from '../domain/token-keys.js';
import { EventFeed } from '../expiry/event-feed.js';
import { ExpiryScheduler } from '../expiry/scheduler.js';
import { createHttpServer } from '../http/http-server.js';
import { openStore, type KnexStore } from '../store/knex-store.js';
import type { RotorConfig } from './config.js';

/** A running Rotor: both ports bound, storage open. */
export interface RunningRotor {
  grpcPort: number;
  httpPort: number;
  app: AppContext;
  store: KnexStore;
  /** The expiry scheduler (tests call `runOnce()` after moving the clock) and the WatchExpiry feed. */
  expiry: { scheduler: ExpiryScheduler; feed: EventFeed };
  close(graceMs?: number): Promise<void>;
}

/**
 * After the unary calls have finished, how long shutdown lets streams deliver their UNAVAILABLE
 * before it cuts what is left (a client that stopped reading cannot receive it anyway).
 */
const STREAM_FLUSH_MS = 1000;

/** Builds the application context (storage, keys, clock, randomness) from configuration. */
export async function createApp(config: RotorConfig, log: Logger, now: () => number = Date.now): Promise<AppContext & { store: KnexStore }> {
  const store = await openStore({ url: config.databaseUrl }, { ttlMs: config.tokenCacheTtlMs, maxEntries: 10_000 });
  return {
    store,
    keys: createTokenKeys(config.secret),
    limits: config.limits,
    now,
    random: (n) => new Uint8Array(randomBytes(n)),
    log,
  };
}

/** The composition root: opens storage, mounts the handlers on the gRPC and HTTP ports. */
export async function startRotor(config: RotorConfig, log: Logger, now?: () => number): Promise<RunningRotor> {
  const app = await createApp(config, log, now);
  const feed = new EventFeed(app.store.events, app.now, log, {
    pollIntervalMs: config.expiry.pollIntervalMs,
    heartbeatMs: config.expiry.heartbeatSeconds * 1000,
    bufferEvents: config.expiry.bufferEvents,
  });
  const scheduler = new ExpiryScheduler(app.store.events, app.now, log, {
    thresholdsSeconds: config.expiry.thresholdsSeconds,
    intervalMs: config.expiry.scanIntervalMs,
  });
  const unwake = app.store.onEventsCommitted(() => feed.wake());
  const services = rotorServices(app, { feed, thresholdsSeconds: config.expiry.thresholdsSeconds });
  const ping = async () => {
    await app.store.knex.raw('select 1');
  };
  const tracker = new CallTracker();
  const grpcServer = createGrpcServer(services, log, tracker);
  const httpServer: HttpServer = createHttpServer(app, services, ping, tracker);
  let grpcPort: number;
  try {
    await feed.start();
    grpcPort = await bindGrpc(grpcServer, config.host, config.grpcPort);
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(config.httpPort, config.host, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    feed.close();
    grpcServer.forceShutdown();
    await app.store.close();
    throw e;
  }
  scheduler.start();
  const httpPort = (httpServer.address() as AddressInfo).port;
  log.info('rotor listening', {
    host: config.host,
    grpc_port: grpcPort,
    http_port: httpPort,
    database: app.store.engine,
    secret_source: config.secretSource,
  });
  return {
    grpcPort,
    httpPort,
    app,
    store: app.store,
    expiry: { scheduler, feed },
    /**
     * Ends every WatchExpiry stream with UNAVAILABLE, stops accepting calls, lets unary calls in
     * flight finish for up to `graceMs` (streams get STREAM_FLUSH_MS after them, not the whole
     * grace), then cuts what is left, and closes the database.
     */
    async close(graceMs = 5000) {
      unwake();
      feed.close();
      await scheduler.stop();
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
        tracker.unaryDrained().then(() => Promise.race([allDone.then(() => false), after(STREAM_FLUSH_MS).then(() => true)])),
      ]);
      if (cut) {
        grpcServer.forceShutdown();
        httpServer.closeAllConnections();
      }
      for (const t of timers) clearTimeout(t);
      clearInterval(idleSweep);
      await allDone;
      await feed.settled();
      await app.store.close();
    },
  };
}
