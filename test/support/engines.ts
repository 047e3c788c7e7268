/**
 * The storage engines every store and end-to-end test runs on (docs/design.md, "Rules that hold
 * everywhere": tests run on both SQLite and PostgreSQL).
 *
 *   ROTOR_TEST_DATABASE_URL=postgres://user@host:5432/db   (a server where the user may CREATE DATABASE)
 *
 * When it is set, `ENGINES` is ['sqlite', 'postgres'] and each PostgreSQL test server gets a scratch
 * database of its own (`rotor_test_<random>`, dropped when the server stops), so parallel test
 * files and parallel CI runs never see each other's rows. When it is unset, `ENGINES` is
 * ['sqlite'] and one line (test/support/global-setup.ts) says that the PostgreSQL half is
 * skipped. `.ci/run` always sets it.
 * `ROTOR_TEST_POSTGRES_URL` (its earlier name) is still read as an alias.
 *
 * Adopting it in a test file:
 *
 *   describe.each(ENGINES)('my feature (%s)', (engine) => {
 *     beforeAll(async () => { s = await startTestServer({}, { engine }); });
 *     ...
 *   });
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchDatabase, type BenchDatabase } from '../../bench/postgres.js';
import { describe } from 'vitest';
import type { Engine } from '../../src/store/database.js';

export type { Engine };

/** The PostgreSQL server for tests, or undefined when the PostgreSQL half is skipped. */
export const TEST_POSTGRES_URL: string | undefined =
  process.env.ROTOR_TEST_DATABASE_URL || process.env.ROTOR_TEST_POSTGRES_URL || undefined;

if (TEST_POSTGRES_URL !== undefined && !/^postgres(ql)?:\/\//.test(TEST_POSTGRES_URL)) {
  throw new Error(`ROTOR_TEST_DATABASE_URL must be a postgres:// URL, got "${TEST_POSTGRES_URL}"`);
}

/** Every engine the tests run on here. */
export const ENGINES: readonly Engine[] = TEST_POSTGRES_URL ? ['sqlite', 'postgres'] : ['sqlite'];

/**
 * `describe` for tests that exist only on PostgreSQL (several processes on one database,
 * LISTEN/NOTIFY): skipped, and counted as skipped, when ROTOR_TEST_DATABASE_URL is unset. End the
 * title with "on postgres" so .ci/run counts them.
 */
export const describeOnPostgres = describe.skipIf(!TEST_POSTGRES_URL);

/** A throw-away database on the test PostgreSQL server. */
export type ScratchDatabase = BenchDatabase;

/** Creates `rotor_test_<random>` on the test server (ROTOR_TEST_DATABASE_URL). */
export async function scratchDatabase(adminUrl: string | undefined = TEST_POSTGRES_URL): Promise<ScratchDatabase> {
  if (!adminUrl) throw new Error('scratchDatabase needs ROTOR_TEST_DATABASE_URL');
  return createScratchDatabase(adminUrl, 'rotor_test');
}

/** A throw-away database of `engine`: a scratch PostgreSQL database, or a SQLite file in a temporary directory. */
export async function engineDatabase(engine: Engine): Promise<ScratchDatabase> {
  if (engine === 'postgres') return scratchDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'rotor-db-'));
  return { url: `sqlite://${join(dir, 'rotor.db')}`, drop: async () => rmSync(dir, { recursive: true, force: true }) };
}

/** Every combination of `xs` with every engine, for `describe.each` over two dimensions. */
export function withEngines<T>(xs: readonly T[]): [T, Engine][] {
  return xs.flatMap((x) => ENGINES.map((e): [T, Engine] => [x, e]));
}
