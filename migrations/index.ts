import type { Knex } from 'knex';
import * as core from './20261127_001_core.js';
import * as workloadBinding from './20261127_002_workload_binding.js';
import * as signingKeys from './20261127_003_signing_keys.js';
import * as expiryEvents from './20261127_004_expiry_events.js';
import * as pgEventNotify from './20261127_050_pg_event_notify.js';
import * as pgEventCommitOrder from './20261127_051_pg_event_commit_order.js';
import * as workloadJtiNonce from './20261127_052_workload_jti_nonce.js';
import * as retention from './20261207_061_retention.js';
import * as serverKeyFingerprint from './20261207_071_server_key_fingerprint.js';
import * as rotatedAt from './20261207_081_rotated_at.js';
import * as lineage from './20261208_021_lineage.js';
import * as serverKeyIds from './20261208_051_server_key_ids.js';
import * as brakes from './20261208_031_brakes.js';

/** Every migration in order. Listed in code so the compiled build needs no directory scan. */
export const MIGRATIONS: ReadonlyArray<readonly [string, Knex.Migration]> = [
  ['20261127_001_core', core],
  ['20261127_002_workload_binding', workloadBinding],
  ['20261127_003_signing_keys', signingKeys],
  ['20261127_004_expiry_events', expiryEvents],
  ['20261127_050_pg_event_notify', pgEventNotify],
  ['20261127_051_pg_event_commit_order', pgEventCommitOrder],
  ['20261127_052_workload_jti_nonce', workloadJtiNonce],
  ['20261207_061_retention', retention],
  ['20261207_071_server_key_fingerprint', serverKeyFingerprint],
  ['20261207_081_rotated_at', rotatedAt],
  ['20261208_021_lineage', lineage],
  ['20261208_051_server_key_ids', serverKeyIds],
  ['20261208_031_brakes', brakes],
];

/** A knex migration source over the list above. */
export const migrationSource: Knex.MigrationSource<readonly [string, Knex.Migration]> = {
  getMigrations: async () => [...MIGRATIONS],
  getMigrationName: (m) => m[0],
  getMigration: async (m) => m[1],
};
