import { randomBytes } from 'node:crypto';
import { callPeerKey } from '../api/peer-key.js';
import { Brakes } from '../app/brakes.js';
import type { AppContext } from '../app/context.js';
import type { JwtSettings } from '../app/jwt-settings.js';
import type { Logger } from '../app/logger-port.js';
import { SigningKeyRing } from '../app/signing-key-ring.js';
import type { RotorError } from '../domain/errors.js';
import { createSigningKeySeal } from '../domain/signing-key-seal.js';
import { createTokenKeys } from '../domain/token-keys.js';
import { WorkloadVerifier } from '../identity/workload-verifier.js';
import { JoseDpopVerifier } from '../identity/dpop-verifier.js';
import { DpopNonces, dpopNonceKey } from '../domain/dpop-nonce.js';
import { KnexReplayCache } from '../store/jti-repository.js';
import { openStore, type KnexStore } from '../store/knex-store.js';
import { MemoryRateCounter, PostgresRateCounter } from '../store/rate-counter.js';
import { KnexServerKeyRepository } from '../store/server-key-repository.js';
import { KnexSigningKeyRepository } from '../store/signing-key-repository.js';
import type { RotorConfig } from './config.js';
import { errorChain } from './logger.js';
import { prepareDirectories } from './data-dir.js';
import { checkServerKey } from './server-key-check.js';
import { loadServerSecret, secretBytes, type ServerSecret } from './server-secret.js';
import type { ServerSecrets } from '../domain/server-keys.js';
import { admitWeakSecret } from './weak-secret-gate.js';

/** The application context on a knex store, and what start-up learnt of the server secret. */
export type RotorApp = AppContext & { store: KnexStore; brakes: Brakes; secret: Pick<ServerSecret, 'source' | 'weak'> };

/** What `createApp` takes besides configuration. */
export interface AppOptions {
  now?: () => number;
  /**
   * `iss` of JWT access tokens and base of the RFC 8414 metadata: `ROTOR_ISSUER`, else what the
   * caller derived from the bound HTTP port (`startRotor`); by default from the configured port.
   */
  issuer?: string;
}

/**
 * Builds the application context (storage, keys, clock, randomness) from configuration: reads
 * the server secret (creating secret.key when it is absent), opens and migrates the database,
 * refuses a weak server secret on a database that holds no tokens (src/runtime/weak-secret-gate.ts)
 * and a secret other than the one the database was created with (src/runtime/server-key-check.ts).
 */
export async function createApp(config: RotorConfig, log: Logger, options: AppOptions = {}): Promise<RotorApp> {
  prepareDirectories(config);
  const secret = loadServerSecret(config.secret);
  const secrets: ServerSecrets = { current: secret.bytes, previous: config.previousSecrets.map(secretBytes) };
  const random = (n: number) => new Uint8Array(randomBytes(n));
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
  const now = options.now ?? Date.now;
  try {
    if (secret.weak !== undefined) await admitWeakSecret(store, secret.weak, log);
    const keyCheck = await checkServerKey(new KnexServerKeyRepository(store.knex), {
      secrets,
      setting: config.secret,
      seal: createSigningKeySeal(secrets.current, secrets.previous),
      now: now(),
      random,
      dropUnknown: config.dropUnknownKeys,
      retryWindowMs: config.limits.retryWindowSeconds * 1000,
      log,
    });
    if (keyCheck.verdict === 'recorded') log.info('server key fingerprint recorded in the database');
    if (keyCheck.verdict === 'rotated')
      log.info("server key: this replica's ROTOR_SECRET is now the recorded current key");
    if (keyCheck.resealed > 0)
      log.info('re-sealed JWT signing keys under the current server key', { count: keyCheck.resealed });
  } catch (e) {
    await store.close();
    throw e;
  }
  const issuer =
    options.issuer ?? config.jwt.issuer ?? defaultIssuer(config.host, config.httpPort, config.tls !== undefined);
  return {
    store,
    secret: { source: secret.source, weak: secret.weak },
    keys: createTokenKeys(secrets.current, secrets.previous),
    limits: config.limits,
    now,
    random,
    log,
    jwt: createJwtSettings(config, store, secrets, issuer, random, log),
    identity:
      config.trust === undefined
        ? undefined
        : new WorkloadVerifier(config.trust, store.guard(new KnexReplayCache(store.knex)), now, log),
    // Shared by every replica on PostgreSQL, per process on SQLite (docs/limits.md).
    brakes: new Brakes(
      config.rateLimits,
      store.engine === 'postgres' ? new PostgresRateCounter(store.knex, now) : new MemoryRateCounter(),
      now,
      log,
      callPeerKey,
    ),
    dpop: new JoseDpopVerifier(store.guard(new KnexReplayCache(store.knex)), now, {
      maxAgeSeconds: config.dpop.maxAgeSeconds,
      nonces: config.dpop.nonce
        ? new DpopNonces(dpopNonceKey(secrets.current), config.dpop.maxAgeSeconds, secrets.previous.map(dpopNonceKey))
        : undefined,
    }),
  };
}

/** JWT access token settings: issuer, lifetime and the signing key ring (keys sealed under the server secret). */
function createJwtSettings(
  config: RotorConfig,
  store: KnexStore,
  secrets: ServerSecrets,
  issuer: string,
  random: (n: number) => Uint8Array,
  log: Logger,
): JwtSettings {
  const schedule = { rotationMs: config.jwt.keyRotationSeconds * 1000, ttlMs: config.jwt.accessTokenTtlSeconds * 1000 };
  const keyRing = new SigningKeyRing(
    store.guard(new KnexSigningKeyRepository(store.knex)),
    createSigningKeySeal(secrets.current, secrets.previous),
    schedule,
    config.jwt.signingAlg,
    random,
    log,
  );
  return { issuer, ttlSeconds: config.jwt.accessTokenTtlSeconds, keyRing };
}

/** `http(s)://<host>:<port>`, the issuer when `ROTOR_ISSUER` is unset. */
export function defaultIssuer(host: string, port: number, tls: boolean): string {
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
