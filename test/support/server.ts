import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import { createSigningKeySeal } from '../../src/domain/signing-key-seal.js';
import { loadConfig, type RotorConfig } from '../../src/runtime/config.js';
import { loadServerSecret, secretBytes } from '../../src/runtime/server-secret.js';
import { createLogger } from '../../src/runtime/logger.js';
import { startRotor, type RunningRotor } from '../../src/runtime/server.js';
import { BRAKES_OFF } from './brakes-off.js';
import { scratchDatabase, type Engine, type ScratchDatabase } from './engines.js';
import { secretsIn, secretsInDirectory, secretsInPostgres } from './leak-scan.js';

/** A clock tests can move forward; starts at the real time. */
export interface TestClock {
  now(): number;
  advance(ms: number): void;
}

export function testClock(): TestClock {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance: (ms) => {
      offset += ms;
    },
  };
}

/** A real Rotor on ephemeral ports with its own data directory and captured log lines. */
export interface TestServer {
  rotor: RunningRotor;
  engine: Engine;
  /** The server's database, reached directly (not through `rewriteDatabaseUrl`): a scratch database on PostgreSQL. */
  databaseUrl: string;
  clock: TestClock;
  dataDir: string;
  logs: string[];
  grpcAddress: string;
  httpUrl: string;
  /** Secret of a bootstrap admin token (rotor:admin, rotor:rotate, rotor:introspect). */
  adminSecret: string;
  /** `graceMs`: as RunningRotor.close (default its 5 s). */
  stop(graceMs?: number): Promise<void>;
}

/** Every secret and JWT any test server issued in this worker, and their signing keys' private parts, for leak checks. */
export const issuedSecrets = new Set<string>();

/** Options of `startTestServer`. */
export interface TestServerOptions {
  /** 'sqlite' (default): a file in the data directory; 'postgres': a scratch database of its own. */
  engine?: Engine;
  /** PostgreSQL: the URL the server connects with, from the scratch database's (e.g. through a proxy). */
  rewriteDatabaseUrl?: (url: string) => string;
  /**
   * A second replica: serve `join`'s database (PostgreSQL) instead of a new one, with its admin
   * token (no bootstrap); `env` must give both the same ROTOR_SECRET. Its stop() leaves the
   * database to `join`.
   */
  join?: TestServer;
}

/**
 * Starts a server; `env` overrides ROTOR_* variables (ports are always ephemeral). With
 * `{ engine: 'postgres' }` it runs on a scratch database on ROTOR_TEST_DATABASE_URL, dropped by
 * `stop()` (test/support/engines.ts).
 */
export async function startTestServer(
  env: Record<string, string> = {},
  options: TestServerOptions = {},
): Promise<TestServer> {
  const engine = options.join?.engine ?? options.engine ?? 'sqlite';
  const dataDir = mkdtempSync(join(tmpdir(), 'rotor-test-'));
  let db: ScratchDatabase | undefined;
  let rotor: RunningRotor;
  let config: RotorConfig;
  const logs: string[] = [];
  const clock = testClock();
  try {
    if (engine === 'postgres' && !options.join) db = await scratchDatabase();
    // Retention passes only when a test runs them (rotor.retention.runOnce()), whatever its clock says.
    config = loadConfig({
      ROTOR_DATA_DIR: dataDir,
      ROTOR_GRPC_PORT: '0',
      ROTOR_HTTP_PORT: '0',
      ROTOR_RETENTION_INTERVAL_MS: '0',
      ...BRAKES_OFF,
      ...(db ? { ROTOR_DATABASE_URL: options.rewriteDatabaseUrl?.(db.url) ?? db.url } : {}),
      ...(options.join ? { ROTOR_DATABASE_URL: options.join.databaseUrl } : {}),
      ...env,
    });
    // Raw lines, without the logger's redaction: the leak check below must see any secret.
    const log = createLogger('debug', (line) => void logs.push(line), { redact: false });
    rotor = await startRotor(config, log, clock.now);
  } catch (e) {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const admin = options.join
    ? { secret: options.join.adminSecret }
    : await bootstrapAdmin(rotor.app, { ownerId: 'admin', lifetimeSeconds: 30 * 86400 });
  issuedSecrets.add(admin.secret);
  return {
    rotor,
    engine,
    databaseUrl: options.join?.databaseUrl ?? db?.url ?? `sqlite://${join(dataDir, 'rotor.db')}`,
    clock,
    dataDir,
    logs,
    grpcAddress: `127.0.0.1:${rotor.grpcPort}`,
    httpUrl: `http://127.0.0.1:${rotor.httpPort}`,
    adminSecret: admin.secret,
    /**
     * Stops the server, then fails if any secret, JWT or private signing key (its JWK `d`, known
     * by unsealing the stored keys) reached the database, the data directory or the log in plaintext.
     */
    async stop(graceMs?: number) {
      // Read while the database is open; a failure still closes the server and drops the scratch
      // database, then fails the stop (the key check would be incomplete).
      let keysUnread: unknown;
      try {
        for (const d of await privateKeyMaterial(rotor, loadServerSecret(config.secret).bytes, config.previousSecrets))
          issuedSecrets.add(d);
      } catch (e) {
        keysUnread = e;
      }
      await rotor.close(graceMs);
      let inDb: string[] = [];
      try {
        if (db) inDb = await secretsInPostgres(db.url, issuedSecrets);
      } finally {
        await db?.drop();
      }
      const inFiles = secretsInDirectory(dataDir, issuedSecrets);
      const inLogs = secretsIn(logs.join(''), issuedSecrets);
      rmSync(dataDir, { recursive: true, force: true });
      if (keysUnread !== undefined) throw new Error('leak check: cannot read the signing keys', { cause: keysUnread });
      if (inFiles.length > 0 || inLogs.length > 0 || inDb.length > 0) {
        throw new Error(
          `secrets leaked: ${inFiles.length} in the data directory, ${inDb.length} in the database, ${inLogs.length} in the log`,
        );
      }
    },
  };
}

/** The private parts (`d`) of every signing key still stored, unsealed with the server secret. */
async function privateKeyMaterial(rotor: RunningRotor, secret: Uint8Array, previous: string[]): Promise<string[]> {
  const seal = createSigningKeySeal(secret, previous.map(secretBytes));
  const rows = (await rotor.store
    .knex('signing_keys')
    .whereNotNull('private_key_sealed')
    .select('kid', 'private_key_sealed')) as { kid: string; private_key_sealed: string }[];
  return rows.map((r) => String((JSON.parse(seal.open(r.kid, r.private_key_sealed)) as { d: string }).d));
}

/** A Timestamp `ms` milliseconds after `from`. */
export function inMs(from: number, ms: number) {
  return timestampFromMs(from + ms);
}

export { create };

/**
 * Waits until the server's live feed holds exactly `count` watchers: the streams opened before are
 * registered (a live-only watch sends only what commits after that), or cancelled ones dropped.
 * Polls the feed instead of sleeping a fixed time, which a loaded machine can outlast.
 */
export async function waitForWatchers(s: TestServer, count: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (s.rotor.expiry.feed.watchers !== count) {
    if (Date.now() > deadline)
      throw new Error(
        `expected ${count} watchers in the feed, still ${s.rotor.expiry.feed.watchers} after ${timeoutMs} ms`,
      );
    await new Promise((r) => setTimeout(r, 10));
  }
}
