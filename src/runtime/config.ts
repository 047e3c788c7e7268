import { readFileSync } from 'node:fs';
import { MAX_HEAP_GROWING_PERCENT, type HeapGrowthPolicy } from './heap-growth.js';
import { join, resolve } from 'node:path';
import type { GrpcConnectionLimits } from '../api/grpc-listener.js';
import { DEFAULT_THRESHOLDS_SECONDS, normalizeThresholds, parseDurationSeconds } from '../domain/expiry.js';
import { SIGNING_ALGS, type SigningAlg } from '../domain/jwt-access-token.js';
import { DEFAULT_LIMITS, type PolicyLimits } from '../domain/policy.js';
import { DEFAULT_RATE_LIMITS, type RateLimit, type RateLimits } from '../domain/rate-limits.js';
import { DEFAULT_WATCH_STREAM_CAPS, type WatchStreamCaps } from '../domain/watch-stream-caps.js';
import { parseTrustConfig, TrustConfigError, type TrustConfig } from '../identity/trust-config.js';
import { ConfigError } from './config-error.js';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './log-lines.js';
import { openFileLimit } from './open-file-limit.js';
import { requireSecretLength, type SecretSetting } from './server-secret.js';
import type { SettingName } from './setting-names.js';
import { loadTlsConfig, type TlsConfig } from './tls-config.js';

/** Everything the server reads from the environment, validated. */
export interface RotorConfig {
  host: string;
  grpcPort: number;
  httpPort: number;
  dataDir: string;
  databaseUrl: string;
  /** Most connections this process holds to PostgreSQL (SQLite always uses one). */
  databasePoolMax: number;
  /**
   * Longest a database statement, a connection attempt or a wait for a pooled connection may
   * take before the call fails with `unavailable` (on SQLite: the busy timeout).
   */
  databaseStatementTimeoutMs: number;
  /**
   * PostgreSQL: LISTEN for other replicas' event inserts and drop the token rows they name from
   * the cache at once. Off behind a transaction-pooling proxy, where LISTEN does not work.
   */
  databaseListen: boolean;
  /** The server secret's source; read (and secret.key created) at start-up by src/runtime/server-secret.ts. */
  secret: SecretSetting;
  /** `ROTOR_SECRET_PREVIOUS`: older server secrets, still accepted for what they made (docs/server-key.md). */
  previousSecrets: string[];
  /** `ROTOR_SECRET_DROP_UNKNOWN`: start even when rows depend on server keys that are not configured. */
  dropUnknownKeys: boolean;
  limits: PolicyLimits;
  logLevel: LogLevel;
  /** `ROTOR_LOG_FORMAT`: JSON lines, or pino-pretty for a terminal. */
  logFormat: LogFormat;
  /** `ROTOR_ACCESS_LOG`: one `access` line per call on both ports and the HTTP routes (src/api/access-log.ts). */
  accessLog: boolean;
  /** How long token rows may be served from the in-process cache (0 disables it). */
  tokenCacheTtlMs: number;
  /** Signed JWT access tokens (docs/jwt-access-tokens.md). */
  jwt: JwtConfig;
  /** Trusted workload issuers and federation rules (ROTOR_TRUST_CONFIG); undefined: none. */
  trust: TrustConfig | undefined;
  /** WatchExpiry and the expiry scheduler (docs/watch-expiry.md). */
  expiry: ExpiryConfig;
  /** What the retention job deletes, and how often it runs (README, "Retention"). */
  retention: RetentionConfig;
  /** TLS on both ports (`ROTOR_TLS_CERT_FILE`, `ROTOR_TLS_KEY_FILE`); undefined: plain text. */
  tls: TlsConfig | undefined;
  /** `ROTOR_METRICS`: GET /metrics on the HTTP port open to all, for a `rotor:metrics` bearer only, or not served (docs/metrics.md). */
  metrics: 'on' | 'token' | 'off';
  /** Connection limits of the gRPC port (README: "Connection limits"). */
  grpcConnections: GrpcConnectionLimits;
  /** `ROTOR_REFLECTION`: gRPC server reflection (v1 and v1alpha) on the gRPC port. */
  reflection: boolean;
  /** `ROTOR_CONSOLE`: the web console at /console/ on the HTTP port (docs/console.md). */
  console: boolean;
  /** The brakes (`ROTOR_RATE_LIMIT_*`, docs/limits.md); a maximum of 0 turns one off. */
  rateLimits: RateLimits;
  /** DPoP proofs (docs/dpop.md). */
  dpop: DpopConfig;
}

/** DPoP settings (docs/dpop.md). */
export interface DpopConfig {
  /** `ROTOR_DPOP_MAX_AGE_SECONDS`: how old a proof's `iat` may be (plus a 5-second skew). */
  maxAgeSeconds: number;
  /** `ROTOR_DPOP_NONCE`: every proof must carry a server nonce (RFC 9449 §8). */
  nonce: boolean;
}

/** Settings of the expiry scheduler and the WatchExpiry feed. */
export interface ExpiryConfig {
  /** EXPIRING_SOON thresholds in seconds, largest first. */
  thresholdsSeconds: number[];
  /** Time between scheduler passes; 0 disables the scheduler in this process. */
  scanIntervalMs: number;
  heartbeatSeconds: number;
  /** Undelivered events one watcher may hold before its stream ends with RESOURCE_EXHAUSTED. */
  bufferEvents: number;
  /** How often the feed reads the log without a local wake-up (other replicas' commits). */
  pollIntervalMs: number;
  /** Most WatchExpiry streams per bearer token, per owner id and in this process (each replica counts its own). */
  streamCaps: WatchStreamCaps;
}

/** Highest value of a ROTOR_WATCH_MAX_STREAMS_* variable: far past what one process can hold (about 15 KB a stream). */
const MAX_STREAM_CAP = 1_000_000;

/** Settings of the retention job (src/expiry/retention.ts). */
export interface RetentionConfig {
  /** Tokens ended, and events written, longer ago than this many days are deleted; 0 keeps everything. */
  days: number;
  /** Time between passes; 0 runs none in this process. */
  intervalMs: number;
}

export { ConfigError };

type Env = Record<string, string | undefined>;

function port(env: Env, name: SettingName, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535)
    throw new ConfigError(`${name} must be a port number 0-65535 (0 = ephemeral), got "${raw}"`);
  return n;
}

function wholeNumber(env: Env, name: SettingName, fallback: number, max: number): number {
  return inRange(env, name, fallback, 0, max);
}

function inRange(env: Env, name: SettingName, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  const unit = name.endsWith('_MS')
    ? ' of milliseconds'
    : name.endsWith('_SECONDS')
      ? ' of seconds'
      : name.endsWith('_DAYS')
        ? ' of days'
        : '';
  if (!/^\d+$/.test(raw) || n < min || n > max)
    throw new ConfigError(`${name} must be a whole number${unit} between ${min} and ${max}, got "${raw}"`);
  return n;
}

/** ROTOR_EXPIRY_THRESHOLDS: a comma-separated list of durations such as `30d,7d,1d,1h`. */
function thresholds(env: Env): number[] {
  const raw = env.ROTOR_EXPIRY_THRESHOLDS;
  if (raw === undefined || raw.trim() === '') return [...DEFAULT_THRESHOLDS_SECONDS];
  const parts = raw.split(',').map((p) => p.trim());
  const seconds = parts.map((p) => parseDurationSeconds(p));
  if (parts.length > 16 || seconds.some((s) => s === undefined || s === 0 || s > 10 * 365 * 86400)) {
    throw new ConfigError(
      `ROTOR_EXPIRY_THRESHOLDS must be up to 16 comma-separated durations like 30d,7d,1d,1h (units s, m, h, d; at most 3650d), got "${raw}"`,
    );
  }
  return normalizeThresholds(seconds as number[]);
}

/**
 * Where the server secret comes from: `ROTOR_SECRET` (checked for length here), else
 * `<data dir>/secret.key`, which start-up reads and creates when absent
 * (src/runtime/server-secret.ts). Nothing is written while configuration is parsed.
 */
function secretSetting(env: Env, dataDir: string): SecretSetting {
  const value = env.ROTOR_SECRET;
  if (value === undefined || value === '') return { from: 'file', path: join(dataDir, 'secret.key') };
  requireSecretLength(value, 'ROTOR_SECRET');
  return { from: 'env', value };
}

/** Most entries of ROTOR_SECRET_PREVIOUS: each one costs a digest on every lookup that misses. */
const MAX_PREVIOUS_SECRETS = 4;

/**
 * `ROTOR_SECRET_PREVIOUS`: comma-separated older server secrets (hex and base64 never contain a
 * comma), each as long as ROTOR_SECRET must be, none repeated and none equal to ROTOR_SECRET.
 */
export function previousSecrets(env: Env): string[] {
  const raw = env.ROTOR_SECRET_PREVIOUS;
  if (raw === undefined || raw.trim() === '') return [];
  const values = raw.split(',').map((v) => v.trim());
  if (values.length > MAX_PREVIOUS_SECRETS)
    throw new ConfigError(`ROTOR_SECRET_PREVIOUS holds at most ${MAX_PREVIOUS_SECRETS} secrets, got ${values.length}`);
  values.forEach((v, i) => {
    const name = `ROTOR_SECRET_PREVIOUS entry ${i + 1}`;
    if (v === '') throw new ConfigError(`${name} is empty; separate the secrets with single commas`);
    requireSecretLength(v, name);
  });
  if (new Set(values).size !== values.length) throw new ConfigError('ROTOR_SECRET_PREVIOUS names one secret twice');
  if (env.ROTOR_SECRET !== undefined && values.includes(env.ROTOR_SECRET))
    throw new ConfigError('ROTOR_SECRET_PREVIOUS repeats ROTOR_SECRET; list only the older secrets');
  return values;
}

/** `ROTOR_SECRET_DROP_UNKNOWN`: true or false (default false). */
export function dropUnknownKeys(env: Env): boolean {
  const raw = env.ROTOR_SECRET_DROP_UNKNOWN || 'false';
  if (raw !== 'true' && raw !== 'false')
    throw new ConfigError(`ROTOR_SECRET_DROP_UNKNOWN must be true or false, got "${raw}"`);
  return raw === 'true';
}

/** Reads and validates the JSON file named by ROTOR_TRUST_CONFIG (docs/workload-identity.md). */
function loadTrustConfig(env: Env, maxLifetimeSeconds: number): TrustConfig | undefined {
  const file = env.ROTOR_TRUST_CONFIG;
  if (file === undefined || file === '') return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`ROTOR_TRUST_CONFIG: cannot read ${file} as JSON: ${(e as Error).message}`);
  }
  try {
    return parseTrustConfig(doc, maxLifetimeSeconds);
  } catch (e) {
    if (e instanceof TrustConfigError) throw new ConfigError(`ROTOR_TRUST_CONFIG: ${e.message}`);
    throw e;
  }
}

/**
 * The gRPC port's connection limits (README: "Connection limits"). Maximum age and idle timeout
 * stay below what a Node timer holds (2^31 - 1 ms, with grpc-js's +10 % jitter on the age).
 * `ROTOR_GRPC_MAX_CONNECTIONS` defaults to half the process's open-file limit, leaving the other
 * half to the HTTP port, the database and the files, so connections to the gRPC port alone can
 * never exhaust the descriptors; 10,000 where that limit cannot be read. The stream cap is high
 * because grpc-js clients of one process share one connection per server address, and a stream
 * past the cap waits in the client, silently, until one ends: a WatchExpiry stream never does.
 */
function loadGrpcConnectionLimits(env: Env, fileLimit: number | undefined): GrpcConnectionLimits {
  const defaultMaxConnections = fileLimit === undefined ? 10_000 : Math.max(1, Math.floor(fileLimit / 2));
  return {
    handshakeTimeoutMs: inRange(env, 'ROTOR_GRPC_HANDSHAKE_TIMEOUT_MS', 10_000, 100, 120_000),
    maxConnectionsPerPeer: wholeNumber(env, 'ROTOR_GRPC_MAX_CONNECTIONS_PER_PEER', 100, 1_000_000),
    maxConnections: wholeNumber(env, 'ROTOR_GRPC_MAX_CONNECTIONS', defaultMaxConnections, 1_000_000),
    idleTimeoutMs: inRange(env, 'ROTOR_GRPC_IDLE_TIMEOUT_SECONDS', 300, 1, 86_400) * 1000,
    maxConnectionAgeMs: inRange(env, 'ROTOR_GRPC_MAX_CONNECTION_AGE_SECONDS', 7200, 1, 7 * 86_400) * 1000,
    maxConnectionAgeGraceMs: inRange(env, 'ROTOR_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS', 30, 1, 3600) * 1000,
    maxConcurrentStreams: inRange(env, 'ROTOR_GRPC_MAX_CONCURRENT_STREAMS', 10_000, 1, 1_000_000),
  };
}

/** Highest maximum of a ROTOR_RATE_LIMIT_* variable. */
const MAX_RATE_LIMIT = 1_000_000;

/** One brake: its maximum per window (`name`, 0 turns it off) and the window (`name_WINDOW_SECONDS`). */
function rateLimit(env: Env, name: SettingName, windowName: SettingName, fallback: RateLimit): RateLimit {
  return {
    max: wholeNumber(env, name, fallback.max, MAX_RATE_LIMIT),
    windowSeconds: inRange(env, windowName, fallback.windowSeconds, 1, 86_400),
  };
}

/** The brakes of docs/limits.md. */
function loadRateLimits(env: Env): RateLimits {
  return {
    failed_auth: rateLimit(
      env,
      'ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER',
      'ROTOR_RATE_LIMIT_FAILED_AUTH_WINDOW_SECONDS',
      DEFAULT_RATE_LIMITS.failed_auth,
    ),
    mints: rateLimit(
      env,
      'ROTOR_RATE_LIMIT_MINTS_PER_OWNER',
      'ROTOR_RATE_LIMIT_MINTS_WINDOW_SECONDS',
      DEFAULT_RATE_LIMITS.mints,
    ),
    rotations: rateLimit(
      env,
      'ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY',
      'ROTOR_RATE_LIMIT_ROTATIONS_WINDOW_SECONDS',
      DEFAULT_RATE_LIMITS.rotations,
    ),
  };
}

/** The database part of the configuration (also all that `rotor migrate` reads). */
export function loadDatabaseConfig(
  env: Env = process.env,
): Pick<RotorConfig, 'dataDir' | 'databaseUrl' | 'databasePoolMax' | 'databaseStatementTimeoutMs' | 'databaseListen'> {
  const dataDir = resolve(env.ROTOR_DATA_DIR || './data');
  const databaseUrl = env.ROTOR_DATABASE_URL || `sqlite://${join(dataDir, 'rotor.db')}`;
  if (!/^(postgres(ql)?:\/\/|sqlite:\/\/|file:)/.test(databaseUrl)) {
    throw new ConfigError('ROTOR_DATABASE_URL must start with postgres://, postgresql://, sqlite:// or file:');
  }
  const databasePoolMax = inRange(env, 'ROTOR_DATABASE_POOL_MAX', 10, 1, 1000);
  const databaseStatementTimeoutMs = inRange(env, 'ROTOR_DATABASE_STATEMENT_TIMEOUT_MS', 5000, 100, 600_000);
  const listen = env.ROTOR_DATABASE_LISTEN || 'on';
  if (listen !== 'on' && listen !== 'off')
    throw new ConfigError(`ROTOR_DATABASE_LISTEN must be on or off, got "${listen}"`);
  return { dataDir, databaseUrl, databasePoolMax, databaseStatementTimeoutMs, databaseListen: listen === 'on' };
}

/**
 * Settings of the `rotor serve` process itself (not of a server started in-process, as tests do):
 * how far V8's old space may grow past the live heap before the next full GC
 * (src/runtime/heap-growth.ts; bench/README.md, "Heap growth"). `ROTOR_HEAP_GROWING_PERCENT` (0-300,
 * default 20): at most (1 + p/100) × the live heap, so the RSS of a server holding many streams
 * stays near its live heap; 0 leaves V8's own heuristic. `ROTOR_HEAP_FLOOR_MB` (0-4096, default
 * 64): but always up to this size, so a small heap is not fully collected every few megabytes; 0
 * applies the percent at every size.
 */
export function loadProcessConfig(env: Env = process.env): HeapGrowthPolicy {
  return {
    percent: wholeNumber(env, 'ROTOR_HEAP_GROWING_PERCENT', 20, MAX_HEAP_GROWING_PERCENT),
    floorBytes: wholeNumber(env, 'ROTOR_HEAP_FLOOR_MB', 64, 4096) * 1024 * 1024,
  };
}

/** Reads and validates the configuration (README: "Configuration"). */
export function loadConfig(env: Env = process.env): RotorConfig {
  const dataDir = resolve(env.ROTOR_DATA_DIR || './data');
  const host = env.ROTOR_HOST || '127.0.0.1';
  const { databaseUrl, databasePoolMax, databaseStatementTimeoutMs, databaseListen } = loadDatabaseConfig(env);
  const logLevel = (env.ROTOR_LOG_LEVEL || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError(`ROTOR_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = (env.ROTOR_LOG_FORMAT || 'json') as LogFormat;
  if (!LOG_FORMATS.includes(logFormat))
    throw new ConfigError(`ROTOR_LOG_FORMAT must be json or pretty, got "${env.ROTOR_LOG_FORMAT}"`);
  const accessLog = env.ROTOR_ACCESS_LOG || 'on';
  if (accessLog !== 'on' && accessLog !== 'off')
    throw new ConfigError(`ROTOR_ACCESS_LOG must be on or off, got "${accessLog}"`);
  // The range the message states is the range accepted (1 s to 10 years).
  const maxLifetimeSeconds = inRange(
    env,
    'ROTOR_MAX_LIFETIME_SECONDS',
    DEFAULT_LIMITS.maxLifetimeSeconds,
    1,
    10 * 365 * 24 * 3600,
  );
  const limits: PolicyLimits = {
    maxLifetimeSeconds,
    defaultOverlapSeconds: wholeNumber(
      env,
      'ROTOR_DEFAULT_OVERLAP_SECONDS',
      DEFAULT_LIMITS.defaultOverlapSeconds,
      maxLifetimeSeconds,
    ),
    defaultReuseGraceSeconds: wholeNumber(
      env,
      'ROTOR_DEFAULT_REUSE_GRACE_SECONDS',
      DEFAULT_LIMITS.defaultReuseGraceSeconds,
      DEFAULT_LIMITS.maxReuseGraceSeconds,
    ),
    retryWindowSeconds: wholeNumber(env, 'ROTOR_RETRY_WINDOW_SECONDS', DEFAULT_LIMITS.retryWindowSeconds, 24 * 3600),
    maxReuseGraceSeconds: DEFAULT_LIMITS.maxReuseGraceSeconds,
  };
  const tokenCacheTtlMs = wholeNumber(env, 'ROTOR_TOKEN_CACHE_TTL_MS', 1000, 60_000);
  const grpcPort = port(env, 'ROTOR_GRPC_PORT', 50051);
  const httpPort = port(env, 'ROTOR_HTTP_PORT', 8080);
  const expiry: ExpiryConfig = {
    thresholdsSeconds: thresholds(env),
    scanIntervalMs: wholeNumber(env, 'ROTOR_EXPIRY_SCAN_INTERVAL_MS', 30_000, 3_600_000),
    heartbeatSeconds: inRange(env, 'ROTOR_WATCH_HEARTBEAT_SECONDS', 15, 1, 3600),
    bufferEvents: inRange(env, 'ROTOR_WATCH_BUFFER_EVENTS', 1000, 1, 100_000),
    pollIntervalMs: inRange(env, 'ROTOR_WATCH_POLL_INTERVAL_MS', 1000, 10, 60_000),
    streamCaps: {
      perToken: inRange(
        env,
        'ROTOR_WATCH_MAX_STREAMS_PER_TOKEN',
        DEFAULT_WATCH_STREAM_CAPS.perToken,
        1,
        MAX_STREAM_CAP,
      ),
      perOwner: inRange(
        env,
        'ROTOR_WATCH_MAX_STREAMS_PER_OWNER',
        DEFAULT_WATCH_STREAM_CAPS.perOwner,
        1,
        MAX_STREAM_CAP,
      ),
      perProcess: inRange(
        env,
        'ROTOR_WATCH_MAX_STREAMS_PER_PROCESS',
        DEFAULT_WATCH_STREAM_CAPS.perProcess,
        1,
        MAX_STREAM_CAP,
      ),
    },
  };
  const retention: RetentionConfig = {
    days: wholeNumber(env, 'ROTOR_RETENTION_DAYS', 90, 36_500),
    intervalMs: wholeNumber(env, 'ROTOR_RETENTION_INTERVAL_MS', 3_600_000, 86_400_000),
  };
  const trust = loadTrustConfig(env, maxLifetimeSeconds);
  const secret = secretSetting(env, dataDir);
  const previous = previousSecrets(env);
  const dropUnknown = dropUnknownKeys(env);
  const jwt = loadJwtConfig(env);
  const metrics = env.ROTOR_METRICS || 'on';
  if (metrics !== 'on' && metrics !== 'token' && metrics !== 'off')
    throw new ConfigError(`ROTOR_METRICS must be on, token or off, got "${metrics}"`);
  const reflection = env.ROTOR_REFLECTION || 'on';
  if (reflection !== 'on' && reflection !== 'off')
    throw new ConfigError(`ROTOR_REFLECTION must be on or off, got "${reflection}"`);
  const consoleSetting = env.ROTOR_CONSOLE || 'on';
  if (consoleSetting !== 'on' && consoleSetting !== 'off')
    throw new ConfigError(`ROTOR_CONSOLE must be on or off, got "${consoleSetting}"`);
  const tls = loadTlsConfig(env);
  const dpopNonce = env.ROTOR_DPOP_NONCE || 'off';
  if (dpopNonce !== 'on' && dpopNonce !== 'off')
    throw new ConfigError(`ROTOR_DPOP_NONCE must be on or off, got "${dpopNonce}"`);
  const dpop: DpopConfig = {
    maxAgeSeconds: inRange(env, 'ROTOR_DPOP_MAX_AGE_SECONDS', 60, 1, 3600),
    nonce: dpopNonce === 'on',
  };
  const grpcConnections = loadGrpcConnectionLimits(env, openFileLimit());
  return {
    rateLimits: loadRateLimits(env),
    grpcConnections,
    reflection: reflection === 'on',
    console: consoleSetting === 'on',
    dpop,
    tls,
    metrics,
    host,
    grpcPort,
    httpPort,
    dataDir,
    databaseUrl,
    databasePoolMax,
    databaseStatementTimeoutMs,
    databaseListen,
    secret,
    previousSecrets: previous,
    dropUnknownKeys: dropUnknown,
    limits,
    logLevel,
    logFormat,
    accessLog: accessLog === 'on',
    tokenCacheTtlMs,
    jwt,
    trust,
    expiry,
    retention,
  };
}

/** Settings of signed JWT access tokens (RFC 9068) and their signing keys. */
export interface JwtConfig {
  /** `ROTOR_ISSUER`, normalised without a trailing slash; unset: `http://<host>:<http port>` (`https://` with TLS) once bound. */
  issuer: string | undefined;
  accessTokenTtlSeconds: number;
  keyRotationSeconds: number;
  /** Algorithm of newly created signing keys. */
  signingAlg: SigningAlg;
}

/**
 * RFC 8414 §2: the issuer is a URL with no query or fragment (https in production; http is
 * accepted for loopback and behind a TLS-terminating proxy).
 */
function parseIssuer(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`ROTOR_ISSUER must be an absolute http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new ConfigError('ROTOR_ISSUER must use https (or http)');
  if (url.search !== '' || url.hash !== '' || raw.includes('?') || raw.includes('#')) {
    throw new ConfigError('ROTOR_ISSUER must not have a query or fragment (RFC 8414 §2)');
  }
  if (url.username !== '' || url.password !== '') throw new ConfigError('ROTOR_ISSUER must not contain credentials');
  return url.href.replace(/\/+$/, '');
}

function loadJwtConfig(env: Env): JwtConfig {
  const issuer = env.ROTOR_ISSUER ? parseIssuer(env.ROTOR_ISSUER) : undefined;
  const accessTokenTtlSeconds = inRange(env, 'ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS', 300, 1, 86_400);
  const keyRotationSeconds = inRange(env, 'ROTOR_JWT_KEY_ROTATION_SECONDS', 7 * 86_400, 3600, 365 * 86_400);
  const signingAlg = (env.ROTOR_JWT_SIGNING_ALG || 'ES256') as SigningAlg;
  if (!SIGNING_ALGS.includes(signingAlg))
    throw new ConfigError(`ROTOR_JWT_SIGNING_ALG must be one of ${SIGNING_ALGS.join(', ')}`);
  return { issuer, accessTokenTtlSeconds, keyRotationSeconds, signingAlg };
}
