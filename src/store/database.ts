import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { migrationSource } from '../../migrations/index.js';

/** Which engine a URL selects. */
export type Engine = 'sqlite' | 'postgres';

/** Database settings from configuration. */
export interface DatabaseConfig {
  /** `sqlite:///abs/path.db`, `file:…`, a plain path, or `postgres://…`. */
  url: string;
  poolMax?: number;
}

/** Parses the engine and the connection target out of a database URL. */
export function parseDatabaseUrl(url: string): { engine: Engine; target: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { engine: 'postgres', target: url };
  if (url.startsWith('sqlite://')) return { engine: 'sqlite', target: url.slice('sqlite://'.length) };
  if (url.startsWith('file:')) return { engine: 'sqlite', target: url.slice('file:'.length) };
  return { engine: 'sqlite', target: url };
}

/**
 * Opens the database. SQLite runs in WAL mode on one connection (writers serialise in-process;
 * `busy_timeout` covers other processes such as `rotor bootstrap`). PostgreSQL returns bigint
 * columns as strings; repositories convert with Number().
 */
export function openDatabase(config: DatabaseConfig): { knex: Knex; engine: Engine } {
  const { engine, target } = parseDatabaseUrl(config.url);
  if (engine === 'postgres') {
    return {
      engine,
      knex: knexFactory({ client: 'pg', connection: target, pool: { min: 0, max: config.poolMax ?? 10 } }),
    };
  }
  if (target !== ':memory:') mkdirSync(dirname(target), { recursive: true });
  const knex = knexFactory({
    client: 'sqlite3',
    connection: { filename: target },
    useNullAsDefault: true,
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: { exec(sql: string, cb: (err: Error | null) => void): void }, done: (err: Error | null, conn: unknown) => void) {
        conn.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;', (err) =>
          done(err, conn),
        );
      },
    },
  });
  return { engine, knex };
}

/** Applies every pending migration (run at start and by tests). */
export async function migrate(knex: Knex): Promise<void> {
  await knex.migrate.latest({ migrationSource });
}
