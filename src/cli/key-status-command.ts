import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, previousSecrets } from '../runtime/config.js';
import { keyStatus, rowsOf, type KeyStatus } from '../runtime/server-key-check.js';
import { existingServerSecret, secretBytes } from '../runtime/server-secret.js';
import { describeDatabase, openDatabase, parseDatabaseUrl } from '../store/database.js';
import { KnexServerKeyRepository } from '../store/server-key-repository.js';
import { KEY_STATUS_FLAGS } from './flag-tables.js';

/**
 * `rotor key-status [--json]`: how many stored digests and sealed signing keys still depend on each
 * server key (docs/server-key.md), read from the database with the secrets `rotor serve` would use
 * (ROTOR_SECRET or secret.key, ROTOR_SECRET_PREVIOUS), which it names only by key id. It writes
 * nothing: no migration, no secret.key, no database file.
 */
export async function keyStatusCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: KEY_STATUS_FLAGS, strict: true });
  const config = loadConfig();
  process.stderr.write(`rotor: database: ${describeDatabase(config.databaseUrl)}\n`);
  const { engine, target } = parseDatabaseUrl(config.databaseUrl);
  if (engine === 'sqlite' && target !== ':memory:' && !existsSync(target))
    throw new ConfigError(
      `no database at ${describeDatabase(config.databaseUrl).slice('sqlite '.length)} (ROTOR_DATA_DIR, ROTOR_DATABASE_URL)`,
    );
  const secret = existingServerSecret(process.env, config.dataDir);
  if (secret === undefined)
    throw new ConfigError('no server secret: set ROTOR_SECRET (and ROTOR_SECRET_PREVIOUS) as for rotor serve');
  const secrets = { current: secret.bytes, previous: previousSecrets(process.env).map(secretBytes) };
  const { knex } = openDatabase({ url: config.databaseUrl, poolMax: 1, statementTimeoutMs: 600_000 });
  try {
    if (
      !(await knex.schema.hasTable('server_key')) ||
      !(await knex.schema.hasColumn('server_key', 'legacy_fingerprint'))
    )
      throw new ConfigError('the database is not migrated to this version: run `rotor migrate` first');
    const repo = new KnexServerKeyRepository(knex);
    const usage = await repo.keyUsage(Date.now(), config.limits.retryWindowSeconds * 1000);
    const status = keyStatus(usage, secrets, await repo.legacyFingerprint());
    process.stdout.write(values.json ? `${JSON.stringify({ keys: status.map(asJson) })}\n` : table(status));
  } finally {
    await knex.destroy();
  }
}

function asJson(s: KeyStatus) {
  return {
    key: s.key,
    role: s.role,
    ...(s.legacyOf === undefined ? {} : { legacy_of: s.legacyOf }),
    rows: rowsOf(s),
    tokens: s.tokens,
    idempotency_digests: s.retryKeys,
    signing_keys: s.signingKeys,
    ended: s.ended,
  };
}

function table(status: KeyStatus[]): string {
  const rows = [
    ['KEY', 'ROLE', 'ROWS', 'TOKENS', 'IDEMPOTENCY', 'SIGNING-KEYS', 'ENDED', ''],
    ...status.map((s) => [
      s.key,
      s.role,
      String(rowsOf(s)),
      String(s.tokens),
      String(s.retryKeys),
      String(s.signingKeys),
      String(s.ended),
      s.legacyOf === undefined ? '' : `made from the raw secret of key ${s.legacyOf}`,
    ]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}
