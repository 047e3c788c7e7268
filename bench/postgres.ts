/**
 * PostgreSQL for the bench: scratch databases on `BENCH_POSTGRES_URL` (default
 * ROTOR_TEST_DATABASE_URL, else this machine's postgres://postgres@127.0.0.1:5432/test), created
 * per run and dropped afterwards, so the bench never touches real data.
 */
import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';

export const BENCH_POSTGRES_URL =
  process.env.BENCH_POSTGRES_URL || process.env.ROTOR_TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

/** Creates `rotor_bench_<random>`; rejects with the driver's error when the server is unreachable. */
export function createBenchDatabase(adminUrl: string = BENCH_POSTGRES_URL): Promise<BenchDatabase> {
  return createScratchDatabase(adminUrl, 'rotor_bench');
}

/**
 * Creates `<prefix>_<random>` on the server of `adminUrl` (whose user may CREATE DATABASE) and
 * returns its URL; `drop()` removes it, closing any connection left. Shared with the test suite
 * (test/support/engines.ts), which cannot be imported here: it loads vitest.
 */
export async function createScratchDatabase(adminUrl: string, prefix: string): Promise<BenchDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = () =>
    knexFactory({
      client: 'pg',
      connection: { connectionString: adminUrl, connectionTimeoutMillis: 5000 },
      pool: { min: 0, max: 1 },
    });
  const a = admin();
  try {
    await a.raw(`CREATE DATABASE ${name}`);
  } finally {
    await a.destroy();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const d = admin();
      try {
        await d.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await d.destroy();
      }
    },
  };
}

/** The URL with its password (if any) masked, for the JSON output. */
export function safeUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
