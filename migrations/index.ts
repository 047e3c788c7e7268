import type { Knex } from 'knex';
import * as core from './20261127_001_core.js';
import * as expiryEvents from './20261127_004_expiry_events.js';

/** Every migration in order. Listed in code so the compiled build needs no directory scan. */
export const MIGRATIONS: ReadonlyArray<readonly [string, Knex.Migration]> = [
  ['20261127_001_core', core],
  ['20261127_004_expiry_events', expiryEvents],
];

/** A knex migration source over the list above. */
export const migrationSource: Knex.MigrationSource<readonly [string, Knex.Migration]> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: (m) => m[0],
  getMigration: async (m) => m[1],
};
