import { randomBytes } from 'node:crypto';
import type { Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CallTracker } from '../api/call-tracker.js';
import { listenGrpc, type GrpcListener } from '../api/grpc-listener.js';
import { createGrpcServer } from '../api/grpc-server.js';
import { RpcStats } from '../api/rpc-stats.js';
import { rotorServices } from '../api/services.js';
import type { AppContext } from '../app/context.js';
import type { JwtSettings } from '../app/jwt-settings.js';
import type { Logger } from '../app/logger-port.js';
import { SigningKeyRing } from '../app/signing-key-ring.js';
import { checkCredential } from '../app/watch.js';
import type { RotorError } from '../domain/errors.js';
import { createSigningKeySeal } from '../domain/signing-key-seal.js';
import { createTokenKeys } from '../domain/token-keys.js';
import { EventFeed } from '../expiry/event-feed.js';
import { RetentionJob } from '../expiry/retention.js';
import { ExpiryScheduler } from '../expiry/scheduler.js';
import { createHttpServer } from '../http/http-server.js';
import { HttpRouteStats, Metrics } from '../http/metrics.js';
import { isLoopbackHost } from '../identity/trust-config.js';
import { WorkloadVerifier } from '../identity/workload-verifier.js';
import { KnexReplayCache } from '../store/jti-repository.js';
import { openStore, type KnexStore } from '../store/knex-store.js';
import { KnexSigningKeyRepository } from '../store/signing-key-repository.js';
import type { RotorConfig } from './config.js';
import { errorChain } from './logger.js';
import { admitWeakSecret } from './weak-secret-gate.js';
import { ROTOR_VERSION } from './version.js';

/** A running Rotor: both ports bound, storage open. */
export interface RunningRotor {
  grpcPort: number;
  httpPort: number;
  app: AppContext;
  store: KnexStore;
  /** The expiry scheduler (tests call `runOnce()` after moving the clock) and the WatchExpiry feed. */
  expiry: { scheduler: ExpiryScheduler; feed: EventFeed };
  /** The retention job (tests call `runOnce()` after moving the clock). */
  retention: RetentionJob;
  close(graceMs?: number): Promise<void>;
}

/**
 * After the unary calls have finished, how long shutdown lets streams deliver their UNAVAILABLE
 * before it cuts what is left (a client that stopped reading cannot receive it anyway).
 */
const STREAM_FLUSH_MS = 1000;

/**
 * Builds the application context (storage, keys, clock, randomness) from configuration. Refuses a
 * weak server secret on a database that holds no tokens (src/runtime/weak-secret-gate.ts).
 */
export async function createApp(config: RotorConfig, log: Logger, now: () => number = Date.now): Promise<AppContext & { store: KnexStore }> {
  const store = await openStore(
    {
      url: config.databaseUrl,
      poolMax: config.databasePoolMax,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
      onDriverWarning: (message) => log.warn('database driver warning', { message }),
    },
    { ttlMs: config.tokenCacheTtlMs, maxEntries: 10_000 },
  );
  store.onUnavailable = unavailableLogger(log);
  if (config.weakSecret !== undefined) {
    try {
      await admitWeakSecret(store, config.weakSecret, log);
    } catch (e) {
      await store.close();
      throw e;
    }
  }
  const random = (n: number) => new Uint8Array(randomBytes(n));
  return {
    store,
    keys: createTokenKeys(config.secret),
    limits: config.limits,
    now,
    random,
    log,
    jwt: createJwtSettings(config, store, random, log),
    identity: config.trust === undefined ? undefined : new WorkloadVerifier(config.trust, store.guard(new KnexReplayCache(store.knex)), now, log),
  };
}

/** JWT access token settings; the issuer defaults to the HTTP address (finalised by startRotor). */
function createJwtSettings(config: RotorConfig, store: KnexStore, random: (n: number) => Uint8Array, log: Logger): JwtSettings {
  const schedule = { rotationMs: config.jwt.keyRotationSeconds * 1000, ttlMs: config.jwt.accessTokenTtlSeconds * 1000 };
  const keyRing = new SigningKeyRing(store.guard(new KnexSigningKeyRepository(store.knex)), createSigningKeySeal(config.secret), schedule, config.jwt.signingAlg, random, log);
  return { issuer: config.jwt.issuer ?? defaultIssuer(config.host, config.httpPort, config.tls !== undefined), ttlSeconds: config.jwt.accessTokenTtlSeconds, keyRing };
}

/** `http(s)://<host>:<port>`, the issuer when `ROTOR_ISSUER` is unset. */
function defaultIssuer(host: string, port: number, tls: boolean): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Logs database unavailability at most once a second (calls fail with UNAVAILABLE / 503 on their
 * own; the log says why: the driver's error chain, whose messages name no secret).
 */
function unavailableLogger(log: Logger): (e: RotorError) => void {
  let last = 0;
  let suppressed = 0;
  return (e) => {
    const now = Date.now();
    if (now - last < 1000) {
      suppressed++;
      return;
    }
    log.warn('database unavailable', { reason: e.message, cause: errorChain(e.cause), suppressed });
    last = now;
    suppressed = 0;
  };
}

/** The composition root: opens storage, mounts the handlers on the gRPC and HTTP ports. */
export async function startRotor(config: RotorConfig, log: Logger, now?: () => number): Promise<RunningRotor> {
  const app = await createApp(config, log, now);
  const feed = new EventFeed(app.store.events, app.now, log, {
    pollIntervalMs: config.expiry.pollIntervalMs,
    heartbeatMs: config.expiry.heartbeatSeconds * 1000,
    bufferEvents: config.expiry.bufferEvents,
    streamCaps: config.expiry.streamCaps,
    checkCredential: (tokenId) => checkCredential(app, tokenId),
  });
  if (config.databaseListen) {
    // Other replicas' events wake the feed (and drop their token rows from the cache); the feed
    // drops a wake for a sequence it has read (this process's own commit, echoed back).
    app.store.followRemoteWrites(
      config.databaseUrl,
      (e) => {
        log.warn('database notifications interrupted; reconnecting', { error: e.message });
        // Read the log now: if the database itself is gone, the read fails and the streams end.
        feed.wake();
      },
      (wake) => feed.wake(wake?.sequence),
    );
  }
  const scheduler = new ExpiryScheduler(app.store.events, app.now, log, {
    thresholdsSeconds: config.expiry.thresholdsSeconds,
    intervalMs: config.expiry.scanIntervalMs,
  });
  const retention = new RetentionJob(app.store, app.now, log, { retentionDays: config.retention.days, intervalMs: config.retention.intervalMs });
  const unwake = app.store.onEventsCommitted(() => feed.wake());
  const rpcStats = new RpcStats();
  const services = rotorServices(app, { feed, thresholdsSeconds: config.expiry.thresholdsSeconds }, rpcStats);
  const ping = () => app.store.ping();
  const tracker = new CallTracker();
  const httpStats = new HttpRouteStats();
  const metrics =
    config.metrics === 'off'
      ? undefined
      : new Metrics({
          version: ROTOR_VERSION,
          engine: app.store.engine,
          rpc: rpcStats,
          http: httpStats,
          store: () => app.store.stats(),
          feed: () => feed.stats(),
          scheduler: () => scheduler.stats(),
          secretWeak: config.weakSecret !== undefined,
          retention: () => retention.stats(),
        });
  const grpcServer = createGrpcServer(services, log, config.grpcConnections, tracker);
  const httpServer: HttpServer = createHttpServer(app, services, ping, tracker, {
    stats: httpStats,
    ...(metrics ? { metrics: { route: metrics.route(), requireToken: config.metrics === 'token' } } : {}),
  }, config.tls);
  let grpcListener: GrpcListener | undefined;
  try {
    await feed.start();
    grpcListener = await listenGrpc(grpcServer, { host: config.host, port: config.grpcPort, tls: config.tls, limits: config.grpcConnections, log });
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(config.httpPort, config.host, () => {
        httpServer.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    metrics?.close();
    feed.close();
    grpcServer.forceShutdown();
    await grpcListener?.close();
    await app.store.close();
    throw e;
  }
  const grpcPort = grpcListener.port;
  scheduler.start();
  retention.start();
  const httpPort = (httpServer.address() as AddressInfo).port;
  if (config.metrics === 'token' && config.tls === undefined && !isLoopbackHost(config.host)) {
    log.warn('ROTOR_METRICS=token without TLS: the scraper sends its bearer in plain text; set ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE or terminate TLS in front', { host: config.host });
  }
  if (config.jwt.issuer === undefined) {
    app.jwt.issuer = defaultIssuer(config.host, httpPort, config.tls !== undefined);
    if (config.host === '0.0.0.0' || config.host === '::') log.warn('set ROTOR_ISSUER: the default JWT issuer names a wildcard address', { issuer: app.jwt.issuer });
  }
  log.info('rotor listening', {
    host: config.host,
    grpc_port: grpcPort,
    http_port: httpPort,
    grpc_max_connections: config.grpcConnections.maxConnections,
    grpc_max_connections_per_peer: config.grpcConnections.maxConnectionsPerPeer,
    database: app.store.engine,
    secret_source: config.secretSource,
    issuer: app.jwt.issuer,
    tls: config.tls ? config.tls.certFile : 'off',
    ...(config.tls && { tls_certificate_valid_to: new Date(config.tls.validTo).toISOString() }),
    retention_days: config.retention.days,
    trusted_issuers: config.trust?.issuers.length ?? 0,
    federation_rules: config.trust?.federation.length ?? 0,
  });
  return {
    grpcPort,
    httpPort,
    app,
    store: app.store,
    expiry: { scheduler, feed },
    retention,
    /**
     * Ends every WatchExpiry stream with UNAVAILABLE, stops accepting calls, lets unary calls in
     * flight finish for up to `graceMs` (streams get STREAM_FLUSH_MS after them, not the whole
     * grace), then cuts what is left, and closes the database.
     */
    async close(graceMs = 5000) {
      unwake();
      feed.close();
      await scheduler.stop();
      await retention.stop();
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
        tracker.unaryDrained().then(() => Promise.race([allDone.then(() => false), after(STREAM_FLUSH_MS).then(() => true)])),
      ]);
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
      await feed.settled();
      metrics?.close();
      await app.store.close();
    },
  };
}
