import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { migrationSource } from '../../migrations/index.js';

/** Which engine a URL selects. */
export type Engine = 'sqlite' | 'postgres';

/** Database settings from configuration (README: "Operating Rotor on PostgreSQL"). */
export interface DatabaseConfig {
  /** `sqlite:///abs/path.db`, `file:…`, a plain path, or `postgres://…`. */
  url: string;
  /** PostgreSQL pool size (ROTOR_DATABASE_POOL_MAX); SQLite always uses one connection. */
  poolMax?: number;
  /** ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: statement, connect and pool-acquire timeout. */
  statementTimeoutMs?: number;
  /**
   * Receives knex's own warnings (otherwise printed to the console, breaking the JSON log).
   * Connection failures are left out: the store reports those as `unavailable` itself.
   */
  onDriverWarning?: (message: string) => void;
}

/** Defaults of the settings above (config.ts applies the same ones). */
export const DEFAULT_POOL_MAX = 10;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 5000;

/** Parses the engine and the connection target out of a database URL. */
export function parseDatabaseUrl(url: string): { engine: Engine; target: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { engine: 'postgres', target: url };
  if (url.startsWith('sqlite://')) return { engine: 'sqlite', target: url.slice('sqlite://'.length) };
  if (url.startsWith('file:')) return { engine: 'sqlite', target: url.slice('file:'.length) };
  return { engine: 'sqlite', target: url };
}

/**
 * The database a URL names, for people: a PostgreSQL URL without its password (and query), or
 * `sqlite <absolute path>`, so that a command opening the wrong database says so.
 */
export function describeDatabase(url: string): string {
  const { engine, target } = parseDatabaseUrl(url);
  if (engine === 'sqlite') return `sqlite ${target === ':memory:' ? target : resolve(target)}`;
  try {
    const u = new URL(target);
    if (u.password !== '') u.password = '';
    u.search = '';
    return `postgres ${u.href}`;
  } catch {
    return 'postgres (a URL that does not parse)';
  }
}

/** The part of a pg Client the pool's validation looks at. */
interface PgConnectionState {
  readyForQuery?: boolean;
}

/**
 * Opens the database.
 *
 * PostgreSQL: a pool of up to `poolMax` connections. Every connection carries the server-side
 * `statement_timeout` and a client-side `query_timeout` a little longer (for a server that no
 * longer answers at all), a connect timeout, and TCP keep-alive. Waiting for a pooled connection
 * is bounded by the same timeout, so a lost database turns into an error within about the
 * statement timeout instead of a hang. A connection whose last query never completed is not
 * handed out again (`validate`), and knex drops connections that reported an error. bigint
 * columns come back as strings; repositories convert with Number().
 *
 * SQLite runs in WAL mode on one connection (writers serialise in-process); `busy_timeout` (the
 * statement timeout) bounds how long a statement waits for another process's lock.
 */
export function openDatabase(config: DatabaseConfig): { knex: Knex; engine: Engine } {
  const { engine, target } = parseDatabaseUrl(config.url);
  const timeout = config.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
  const warn = config.onDriverWarning ?? (() => undefined);
  const log: Knex.Config['log'] = {
    warn: (m: unknown) => {
      const text = String(m);
      if (!/^(Connection Error|Acquire connection error)/.test(text)) warn(text.split('\n', 1)[0]!);
    },
    error: (m: unknown) => warn(String(m).split('\n', 1)[0]!),
    deprecate: (m: unknown) => warn(String(m)),
    debug: () => undefined,
  };
  if (engine === 'postgres') {
    return {
      engine,
      knex: knexFactory({
        client: 'pg',
        log,
        connection: {
          connectionString: target,
          statement_timeout: timeout,
          query_timeout: timeout + 1000,
          connectionTimeoutMillis: timeout,
          keepAlive: true,
          application_name: 'rotor',
        },
        acquireConnectionTimeout: timeout,
        pool: {
          min: 0,
          max: config.poolMax ?? DEFAULT_POOL_MAX,
          validate: (conn: PgConnectionState) => conn.readyForQuery !== false,
        },
      }),
    };
  }
  if (target !== ':memory:') mkdirSync(dirname(target), { recursive: true });
  const knex = knexFactory({
    client: 'sqlite3',
    log,
    connection: { filename: target },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate(
        conn: { exec(sql: string, cb: (err: Error | null) => void): void },
        done: (err: Error | null, conn: unknown) => void,
      ) {
        conn.exec(
          `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = ${Math.trunc(timeout)}; PRAGMA foreign_keys = ON;`,
          (err) => done(err, conn),
        );
      },
    },
  });
  return { engine, knex };
}

/** Key of the session advisory lock that serialises migrations across replicas (any constant). */
const MIGRATION_LOCK_KEY = 0x526f746f; // "Roto"

/**
 * Applies every pending migration (run at start, by `rotor migrate` and by tests); returns the
 * names it applied. On PostgreSQL several replicas may start at once: knex's own migration lock
 * makes a second runner fail instead of wait, so the runners first queue on a session-level
 * advisory lock, held on a connection of its own outside the pool (closing it releases the lock),
 * and whoever comes second finds nothing to do.
 */
export async function migrate(knex: Knex): Promise<string[]> {
  if (engineOf(knex) !== 'postgres') return applied(await knex.migrate.latest({ migrationSource }));
  // A connection outside the pool, so a pool of one still has a connection for the migrations.
  const client = knex.client as {
    acquireRawConnection(): Promise<RawPgClient>;
    destroyRawConnection(c: RawPgClient): Promise<void>;
  };
  const conn = await client.acquireRawConnection();
  try {
    await conn.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    return applied(await knex.migrate.latest({ migrationSource }));
  } finally {
    await client.destroyRawConnection(conn).catch(() => undefined);
  }
}

/** The part of a raw pg Client `migrate` uses; closing it releases its session lock. */
interface RawPgClient {
  query(sql: string, values: unknown[]): Promise<unknown>;
}

function applied(result: [number, string[]]): string[] {
  return result[1];
}

/** The engine behind a knex instance or transaction. */
export function engineOf(knex: Knex | Knex.Transaction): Engine {
  const client = (knex.client as { config: { client?: unknown } }).config.client;
  return client === 'pg' ? 'postgres' : 'sqlite';
}
