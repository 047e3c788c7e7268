import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';

/** The PostgreSQL server for tests (CI sets it); tests that need it skip without it. */
export const POSTGRES_URL = process.env.ROTOR_TEST_POSTGRES_URL;

/** Creates a throw-away database on the PostgreSQL server; returns its URL and a dropper. */
export async function scratchDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `rotor_test_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
  await admin.raw(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.destroy();
    },
  };
}
