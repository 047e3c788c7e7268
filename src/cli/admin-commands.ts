import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { bootstrapAdmin } from '../app/bootstrap.js';
import { recoverAdmin } from '../app/recovery.js';
import { ConfigError, loadConfig, type RotorConfig } from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { createApp, type RotorApp } from '../runtime/create-app.js';
import { describeDatabase, parseDatabaseUrl } from '../store/database.js';
import { parseDuration } from './duration.js';
import { BOOTSTRAP_FLAGS, RECOVER_ADMIN_FLAGS } from './flag-tables.js';
import { UsageError } from './usage-error.js';

/**
 * `rotor bootstrap [--owner ID] [--expires-in 90d] [--create]`: the first admin token. It opens the
 * database itself (with the server secret), so it says on stderr which database it opened, and it
 * refuses to create a new SQLite file unless `--create` says so: run in the wrong directory, it
 * would otherwise print an admin token of a new, empty database nobody serves.
 */
export async function bootstrapCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: BOOTSTRAP_FLAGS, strict: true });
  const lifetime = lifetimeOf(values['expires-in']);
  const config = loadConfig();
  requireDatabase(config, values.create ? 'create' : 'bootstrap');
  await withApp(config, async (app) => {
    const minted = await bootstrapAdmin(app, { ownerId: values.owner, lifetimeSeconds: lifetime });
    process.stdout.write(`${minted.secret}\n`);
  });
}

/**
 * `rotor recover-admin [--owner ID] [--expires-in 90d]`: break-glass recovery (README,
 * "Recovering admin access"). Needs the database and the server secret it was created with
 * (src/runtime/server-key-check.ts refuses any other); never creates a database.
 */
export async function recoverAdminCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: RECOVER_ADMIN_FLAGS, strict: true });
  const lifetime = lifetimeOf(values['expires-in']);
  const config = loadConfig();
  requireDatabase(config, 'recover-admin');
  await withApp(config, async (app) => {
    const { minted, revokedIds } = await recoverAdmin(app, { ownerId: values.owner, lifetimeSeconds: lifetime });
    process.stderr.write(
      `rotor: revoked ${revokedIds.length} admin token${revokedIds.length === 1 ? '' : 's'}${revokedIds.length > 0 ? ` (${revokedIds.join(', ')})` : ''}; new admin token ${minted.record.id}\n`,
    );
    process.stdout.write(`${minted.secret}\n`);
  });
}

function lifetimeOf(raw: string): number {
  const lifetime = parseDuration(raw);
  if (lifetime === undefined || lifetime === 0)
    throw new UsageError('--expires-in must look like 90s, 15m, 12h or 30d');
  return lifetime;
}

/**
 * Says which database the command opens, and refuses a SQLite file that does not exist (before
 * anything, secret.key included, is written) unless `bootstrap --create` asked for one.
 */
function requireDatabase(config: RotorConfig, mode: 'bootstrap' | 'create' | 'recover-admin'): void {
  process.stderr.write(`rotor: database: ${describeDatabase(config.databaseUrl)}\n`);
  const { engine, target } = parseDatabaseUrl(config.databaseUrl);
  if (engine !== 'sqlite' || target === ':memory:' || existsSync(target) || mode === 'create') return;
  const where = `no database at ${describeDatabase(config.databaseUrl).slice('sqlite '.length)} (ROTOR_DATA_DIR, ROTOR_DATABASE_URL)`;
  if (mode === 'recover-admin') throw new ConfigError(`${where}: nothing to recover; check the variables`);
  throw new ConfigError(
    `${where}; start \`rotor serve\` (or run \`rotor migrate\`) there first, or pass --create to create a new database in that place`,
  );
}

async function withApp(config: RotorConfig, work: (app: RotorApp) => Promise<void>): Promise<void> {
  const app = await createApp(
    config,
    createLogger('warn', (l) => process.stderr.write(l)),
  );
  try {
    await work(app);
  } finally {
    await app.store.close();
  }
}
