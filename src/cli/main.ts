import { ConnectError } from '@connectrpc/connect';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { bootstrapAdmin } from '../app/bootstrap.js';
import { isRotorError } from '../domain/errors.js';
import { ConfigError, loadConfig, loadDatabaseConfig, loadProcessConfig } from '../runtime/config.js';
import { migrate, openDatabase } from '../store/database.js';
import { createLogger } from '../runtime/logger.js';
import { createApp, startRotor } from '../runtime/server.js';
import { parseDuration } from './duration.js';
import { agentCommand } from './agent-command.js';
import { tokenCommand } from './token-commands.js';
import { UsageError } from './usage-error.js';
import { BOOTSTRAP_FLAGS } from './flag-tables.js';
import { helpFor } from './help.js';
import { endQuietlyOnClosedStdout, inCliTerms } from './cli-output.js';
import { watchCommand } from './watch-command.js';

const USAGE = `usage: rotor <command>      (rotor <command> --help, or rotor help <command>: every flag of a command)
  serve                         run the server (ports and storage from ROTOR_* variables)
  migrate                       apply pending database migrations and exit (serve also applies them)
  bootstrap [--owner ID] [--expires-in 30d]
                                create the first rotor:admin token; prints only its secret
  token create|get|list|rotate|revoke [--server URL] [--json] ...
                                manage tokens on a running server (credential: ROTOR_TOKEN)
    create ... --bind-issuer URL --bind-subject PATTERN --bind-audience AUD [--bind-claim k=v]...
                                bind the token to a workload (docs/workload-identity.md)
    rotate ... [--actor-token-file PATH]
                                the workload JWT of a bound token (or ROTOR_ACTOR_TOKEN)
  watch [--token-id ID]... [--owner ID] [--family ID] [--threshold 1h]... [--after-sequence N]
        [--snapshot] [--json] [--server URL]
                                print expiry and rotation events; default: the ROTOR_TOKEN token
  agent --token-file F [--rotate-at-fraction 2/3] [--exec CMD] [--actor-token-file PATH] [--server URL]
                                keep the token in F fresh (first token: F, else ROTOR_TOKEN); docs/agent.md
`;

async function serve(): Promise<void> {
  const config = loadConfig();
  // Before the server allocates anything: V8 reads this flag at every full GC (not only at start).
  const { heapGrowingPercent } = loadProcessConfig();
  if (heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${heapGrowingPercent}`);
  const log = createLogger(config.logLevel);
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
  const { knex, engine } = openDatabase({
    url: config.databaseUrl,
    poolMax: 2,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  });
  try {
    const applied = await migrate(knex);
    for (const name of applied) process.stdout.write(`applied ${name}\n`);
    process.stdout.write(
      `${engine} database is up to date (${applied.length} migration${applied.length === 1 ? '' : 's'} applied now)\n`,
    );
  } finally {
    await knex.destroy();
  }
}

async function bootstrap(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: BOOTSTRAP_FLAGS, strict: true });
  const lifetime = parseDuration(values['expires-in']);
  if (lifetime === undefined || lifetime === 0)
    throw new UsageError('--expires-in must look like 90s, 15m, 12h or 30d');
  const config = loadConfig();
  const app = await createApp(
    config,
    createLogger('warn', (l) => process.stderr.write(l)),
  );
  try {
    const minted = await bootstrapAdmin(app, { ownerId: values.owner, lifetimeSeconds: lifetime });
    process.stdout.write(`${minted.secret}\n`);
  } finally {
    await app.store.close();
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
  try {
    switch (command) {
      case 'serve':
        await serve();
        return -1;
      case 'migrate':
        await migrateCommand(rest);
        return 0;
      case 'bootstrap':
        await bootstrap(rest);
        return 0;
      case 'token':
        await tokenCommand(rest, process.env);
        return 0;
      case 'watch':
        await watchCommand(rest, process.env, stopSignal());
        return 0;
      case 'agent': {
        const result = await agentCommand(rest, process.env, stopSignal());
        if (result.code !== 0) process.stderr.write(`rotor agent: ${result.message}\n`);
        return result.code;
      }
      case undefined:
      case 'help':
      case '--help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (
      e instanceof UsageError ||
      (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))
    ) {
      // The failing command's own help (every flag it takes), else the list of commands.
      process.stderr.write(`rotor: ${e.message}\n${helpFor([...argv, '--help']) ?? USAGE}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`rotor: configuration: ${e.message}\n`);
      return 2;
    }
    if (isRotorError(e)) {
      process.stderr.write(`rotor: ${e.code}: ${e.message}\n`);
      return 1;
    }
    if (e instanceof ConnectError) {
      process.stderr.write(
        `rotor: ${ConnectError.from(e).code === undefined ? '' : codeName(e)}: ${inCliTerms(e.rawMessage)}\n`,
      );
      return 1;
    }
    process.stderr.write(`rotor: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

/** Aborts on SIGINT or SIGTERM, so long-running commands end cleanly with exit code 0. */
function stopSignal(): AbortSignal {
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  return ac.signal;
}

function codeName(e: ConnectError): string {
  return e.message.slice(1, e.message.indexOf(']'));
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
