import {
  ConfigError,
  loadConfig,
  loadDatabaseConfig,
  loadProcessConfig,
  previousSecrets,
  dropUnknownKeys,
} from '../runtime/config.js';
import { createLogger } from '../runtime/logger.js';
import { applyHeapGrowthPolicy } from '../runtime/heap-growth.js';
import { prepareDirectories } from '../runtime/data-dir.js';
import { unknownSettingWarnings } from '../runtime/setting-names.js';
import { requireRecordedServerKey } from '../runtime/server-key-check.js';
import { existingServerSecret, secretBytes } from '../runtime/server-secret.js';
import { startRotor } from '../runtime/server.js';
import { describeDatabase, migrate, openDatabase } from '../store/database.js';
import { KnexServerKeyRepository } from '../store/server-key-repository.js';
import { bootstrapCommand, recoverAdminCommand } from './admin-commands.js';
import { keyStatusCommand } from './key-status-command.js';
import { reportCommandError } from './command-errors.js';
import { runClientCommand } from './client-commands.js';
import { UsageError } from './usage-error.js';
import { helpFor } from './help.js';
import { endQuietlyOnClosedStdout } from './cli-output.js';

const USAGE = `usage: rotor <command>      (rotor <command> --help, or rotor help <command>: every flag of a command)
  serve                         run the server (ports and storage from ROTOR_* variables)
  migrate                       apply pending database migrations and exit (serve also applies them)
  bootstrap [--owner ID] [--expires-in 90d] [--create]
                                create the first rotor:admin token (expires in 90 days unless told);
                                prints only its secret; --create: allow a new SQLite database
  recover-admin [--owner ID] [--expires-in 90d]
                                break-glass: revoke every active admin token and print a new one's
                                secret (needs the database and its server secret; README)
  key-status [--json]            rows that still depend on each server key (ROTOR_SECRET,
                                ROTOR_SECRET_PREVIOUS); docs/server-key.md
  token create|get|list|rotate|revoke [--server URL] [--json] ...
                                manage tokens on a running server (credential: ROTOR_TOKEN)
    create ... --bind-issuer URL --bind-subject PATTERN --bind-audience AUD [--bind-claim k=v]...
                                bind the token to a workload (docs/workload-identity.md)
    rotate ... [--actor-token-file PATH]
                                the workload JWT of a bound token (or ROTOR_ACTOR_TOKEN)
  watch [--token-id ID]... [--owner ID] [--family ID] [--threshold 1h]... [--after-sequence N]
        [--snapshot] [--json] [--server URL]
                                print expiry and rotation events; default: the ROTOR_TOKEN token
  events [--token ID] [--family ID] [--owner ID] [--type T]... [--since WHEN] [--until WHEN] [--json]
                                print the audit trail: who created, rotated, revoked what (ListEvents)
  agent --token-file F [--rotate-at-fraction 2/3] [--exec CMD] [--actor-token-file PATH] [--server URL]
                                keep the token in F fresh (first token: F, else ROTOR_TOKEN); docs/agent.md
`;

/** Whether `serve` has logged the unknown-variable warnings (else a configuration error prints them). */
let settingsWarned = false;

async function serve(): Promise<void> {
  const config = loadConfig();
  // Before the server allocates anything; followed after every full GC (src/runtime/heap-growth.ts).
  applyHeapGrowthPolicy(loadProcessConfig());
  const log = createLogger(config.logLevel, undefined, { format: config.logFormat });
  for (const warning of unknownSettingWarnings(process.env)) log.warn(warning);
  settingsWarned = true;
  const rotor = await startRotor(config, log);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info('shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    rotor.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** `rotor migrate`: applies pending migrations to ROTOR_DATABASE_URL; prints what it applied. */
async function migrateCommand(args: string[]): Promise<void> {
  if (args.length > 0) throw new UsageError(`migrate takes no arguments, got "${args[0]}"`);
  const config = loadDatabaseConfig();
  process.stderr.write(`rotor: database: ${describeDatabase(config.databaseUrl)}\n`);
  prepareDirectories(config);
  const { knex, engine } = openDatabase({
    url: config.databaseUrl,
    poolMax: 2,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  });
  try {
    // A secret that is there (ROTOR_SECRET, or an existing secret.key) must be this database's:
    // migrating another deployment's database is refused like serving it. Without one, migrate
    // checks nothing (it keys nothing) and creates no secret.key.
    const secret = existingServerSecret(process.env, config.dataDir);
    if (secret !== undefined && !dropUnknownKeys(process.env) && (await knex.schema.hasTable('server_key'))) {
      await requireRecordedServerKey(
        new KnexServerKeyRepository(knex),
        { current: secret.bytes, previous: previousSecrets(process.env).map(secretBytes) },
        secret.setting,
      );
    }
    const applied = await migrate(knex);
    for (const name of applied) process.stdout.write(`applied ${name}\n`);
    process.stdout.write(
      `${engine} database is up to date (${applied.length} migration${applied.length === 1 ? '' : 's'} applied now)\n`,
    );
  } finally {
    await knex.destroy();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  endQuietlyOnClosedStdout();
  const help = helpFor(argv);
  if (help !== undefined) {
    process.stdout.write(help);
    return 0;
  }
  // serve logs them as JSON lines once its logger exists; every other command says them on stderr.
  if (command !== 'serve') warnUnknownSettings();
  try {
    switch (command) {
      case 'serve':
        await serve();
        return -1;
      case 'migrate':
        await migrateCommand(rest);
        return 0;
      case 'bootstrap':
        await bootstrapCommand(rest);
        return 0;
      case 'recover-admin':
        await recoverAdminCommand(rest);
        return 0;
      case 'key-status':
        await keyStatusCommand(rest);
        return 0;
      case 'token':
      case 'watch':
      case 'events':
      case 'agent':
        return await runClientCommand(command, rest);
      case undefined:
      case 'help':
      case '--help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof ConfigError && command === 'serve' && !settingsWarned) warnUnknownSettings();
    // A usage error prints the failing command's own help (every flag it takes), else the list of commands.
    return reportCommandError(e, helpFor([...argv, '--help']) ?? USAGE);
  }
}

/** One line on stderr per ROTOR_* variable Rotor does not read (src/runtime/setting-names.ts). */
function warnUnknownSettings(): void {
  for (const warning of unknownSettingWarnings(process.env)) process.stderr.write(`rotor: warning: ${warning}\n`);
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
