import { AccessLog, accessLineWriter } from '../api/access-log.js';
import { CallTracker } from '../api/call-tracker.js';
import { addGrpcHealthService } from '../api/grpc-health.js';
import { listenGrpc, type GrpcListener } from '../api/grpc-listener.js';
import { addGrpcReflection } from '../api/grpc-reflection.js';
import { createGrpcServer } from '../api/grpc-server.js';
import { RpcStats } from '../api/rpc-stats.js';
import { rotorServices, standardHealthService } from '../api/services.js';
import type { AppContext } from '../app/context.js';
import { HealthState } from '../app/health-state.js';
import type { Logger } from '../app/logger-port.js';
import { checkCredential } from '../app/watch.js';
import { EventFeed } from '../expiry/event-feed.js';
import { file_grpc_health_v1_health } from '../gen/grpc/health/v1/health_pb.js';
import { HealthService } from '../gen/rotor/v1/health_service_pb.js';
import { RetentionJob } from '../expiry/retention.js';
import { ExpiryScheduler } from '../expiry/scheduler.js';
import { consoleHandler } from '../http/console-routes.js';
import { createHttpServer, httpRequestHandler, type HttpPort } from '../http/http-server.js';
import { HttpRouteStats, Metrics } from '../http/metrics.js';
import { isLoopbackHost } from '../identity/trust-config.js';
import type { KnexStore } from '../store/knex-store.js';
import type { RotorConfig } from './config.js';
import { ConfigError } from './config-error.js';
import { createApp, defaultIssuer, type RotorApp } from './create-app.js';
import { LOG_LEVELS } from './log-lines.js';
import { shutdown } from './shutdown.js';
import { ROTOR_VERSION } from './version.js';

export { createApp } from './create-app.js';

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
  /**
   * Ends every WatchExpiry stream with UNAVAILABLE, stops accepting calls, lets unary calls in
   * flight finish for up to `graceMs` (default 5 s), then cuts what is left and closes the
   * database (src/runtime/shutdown.ts).
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * The composition root, in steps: bind the HTTP port (so the issuer is known), build the
 * application on it, build the services and background jobs, listen on the gRPC port and serve
 * the HTTP port, start the jobs. A failure in any step closes what the earlier ones opened.
 */
export async function startRotor(config: RotorConfig, log: Logger, now?: () => number): Promise<RunningRotor> {
  const http = createHttpServer(config.tls);
  const httpPort = await listenHttp(http, config.host, config.httpPort).catch((e: unknown) => {
    throw listenError(e, 'ROTOR_HTTP_PORT', config.host, config.httpPort);
  });
  let app: RotorApp;
  try {
    app = await createApp(config, log, {
      now,
      issuer: config.jwt.issuer ?? defaultIssuer(config.host, httpPort, config.tls !== undefined),
    });
  } catch (e) {
    await closeHttp(http);
    throw e;
  }
  const parts = buildServer(app, config, log);
  let grpcListener: GrpcListener;
  try {
    await parts.feed.start();
    grpcListener = await listenGrpc(parts.grpcServer, {
      host: config.host,
      port: config.grpcPort,
      tls: config.tls,
      limits: config.grpcConnections,
      log,
    });
  } catch (e) {
    parts.health.close();
    parts.metrics?.close();
    parts.feed.close();
    parts.grpcServer.forceShutdown();
    await closeHttp(http);
    await app.store.close();
    throw listenError(e, 'ROTOR_GRPC_PORT', config.host, config.grpcPort);
  }
  http.serve(parts.httpHandler);
  parts.scheduler.start();
  parts.retention.start();
  logStart(app, config, log, grpcListener.port, httpPort);
  return {
    grpcPort: grpcListener.port,
    httpPort,
    app,
    store: app.store,
    expiry: { scheduler: parts.scheduler, feed: parts.feed },
    retention: parts.retention,
    close: (graceMs = 5000) =>
      shutdown(
        {
          health: parts.health,
          stopWork: async () => {
            parts.unwake();
            parts.feed.close();
            await parts.scheduler.stop();
            await parts.retention.stop();
          },
          grpcServer: parts.grpcServer,
          grpcListener,
          httpServer: http.server,
          tracker: parts.tracker,
          release: async () => {
            await parts.feed.settled();
            parts.metrics?.close();
            await app.brakes.close();
            await app.store.close();
          },
        },
        graceMs,
      ),
  };
}

/** Listens on the HTTP port; resolves with the port bound (`0` picks a free one). */
function listenHttp(http: HttpPort, host: string, port: number): Promise<number> {
  return http.server.listen(port, host);
}

/**
 * A port that cannot be bound, as a configuration error naming the variable (a bare
 * `listen EADDRINUSE` does not say which of the two ports, or what to change); other errors pass.
 */
function listenError(e: unknown, variable: 'ROTOR_HTTP_PORT' | 'ROTOR_GRPC_PORT', host: string, port: number): unknown {
  switch ((e as NodeJS.ErrnoException | undefined)?.code) {
    case 'EADDRINUSE':
      return new ConfigError(
        `${variable}: port ${port} is in use on ${host}; stop what holds it, or choose another port (0 picks a free one)`,
      );
    case 'EACCES':
      return new ConfigError(
        `${variable}: port ${port} on ${host} needs privileges this process lacks; use a port above 1023`,
      );
    case 'EADDRNOTAVAIL':
      return new ConfigError(`ROTOR_HOST: ${host} is not an address of this machine`);
    default:
      return e;
  }
}

function closeHttp(http: HttpPort): Promise<void> {
  http.server.closeAllConnections();
  return new Promise<void>((resolve) => http.server.close(() => resolve()));
}

/** How old a database verdict the standard health service may answer from (HealthState). */
const HEALTH_INTERVAL_MS = 2000;

/**
 * Everything that serves the application, not yet started: the WatchExpiry feed (woken by this
 * process's commits and, on PostgreSQL, other replicas' NOTIFYs), the expiry scheduler, the
 * retention job, the services mounted on both ports, the standard health state, the metrics and
 * the gRPC server (with grpc.health.v1 and, unless turned off, reflection).
 */
function buildServer(app: RotorApp, config: RotorConfig, log: Logger) {
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
  const retention = new RetentionJob(app.store, app.now, log, {
    retentionDays: config.retention.days,
    intervalMs: config.retention.intervalMs,
  });
  const unwake = app.store.onEventsCommitted(() => feed.wake());
  const rpcStats = new RpcStats();
  const services = rotorServices(app, { feed, thresholdsSeconds: config.expiry.thresholdsSeconds }, rpcStats);
  const health = new HealthState(() => app.store.ping(), {
    databaseServices: services.map((m) => m.service.typeName).filter((name) => name !== HealthService.typeName),
    processServices: [HealthService.typeName],
    intervalMs: HEALTH_INTERVAL_MS,
  });
  const logUnavailable = app.store.onUnavailable;
  app.store.onUnavailable = (e) => {
    logUnavailable(e);
    health.reportUnavailable();
  };
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
          secretWeak: app.secret.weak !== undefined,
          retention: () => retention.stats(),
          brakes: () => app.brakes.snapshot(),
        });
  // Access lines are `info` lines: ROTOR_LOG_LEVEL=warn drops them, so nothing is built for them then.
  const access =
    config.accessLog && LOG_LEVELS.indexOf(config.logLevel) <= LOG_LEVELS.indexOf('info')
      ? new AccessLog(accessLineWriter(log))
      : undefined;
  const grpcServer = createGrpcServer(services, log, config.grpcConnections, tracker, access);
  addGrpcHealthService(grpcServer, health);
  if (config.reflection) {
    addGrpcReflection(grpcServer, [...services.map((m) => m.service.file), file_grpc_health_v1_health]);
  }
  const httpServices = [...services, standardHealthService(app, health, rpcStats)];
  const httpHandler = httpRequestHandler(app, httpServices, () => app.store.ping(), tracker, {
    stats: httpStats,
    ...(config.console
      ? { console: consoleHandler({ expiryThresholdsSeconds: config.expiry.thresholdsSeconds }) }
      : {}),
    ...(access && { access }),
    ...(metrics ? { metrics: { route: metrics.route(), requireToken: config.metrics === 'token' } } : {}),
  });
  return { feed, scheduler, retention, unwake, health, tracker, metrics, grpcServer, httpHandler };
}

/** The start-up line (and its warnings): what is bound, on what, trusting whom; never a secret. */
function logStart(app: RotorApp, config: RotorConfig, log: Logger, grpcPort: number, httpPort: number): void {
  if (config.metrics === 'token' && config.tls === undefined && !isLoopbackHost(config.host)) {
    log.warn(
      'ROTOR_METRICS=token without TLS: the scraper sends its bearer in plain text; set ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE or terminate TLS in front',
      { host: config.host },
    );
  }
  if (config.jwt.issuer === undefined && (config.host === '0.0.0.0' || config.host === '::')) {
    log.warn('set ROTOR_ISSUER: the default JWT issuer names a wildcard address', { issuer: app.jwt.issuer });
  }
  log.info('rotor listening', {
    host: config.host,
    grpc_port: grpcPort,
    http_port: httpPort,
    grpc_max_connections: config.grpcConnections.maxConnections,
    grpc_max_connections_per_peer: config.grpcConnections.maxConnectionsPerPeer,
    grpc_reflection: config.reflection ? 'on' : 'off',
    database: app.store.engine,
    secret_source: app.secret.source,
    issuer: app.jwt.issuer,
    tls: config.tls ? config.tls.certFile : 'off',
    ...(config.tls && { tls_certificate_valid_to: new Date(config.tls.validTo).toISOString() }),
    retention_days: config.retention.days,
    trusted_issuers: config.trust?.issuers.length ?? 0,
    federation_rules: config.trust?.federation.length ?? 0,
    rate_limits: Object.entries(config.rateLimits)
      .map(([k, l]) => (l.max === 0 ? `${k}=off` : `${k}=${l.max}/${l.windowSeconds}s`))
      .join(' '),
  });
}
