import { endQuietlyOnClosedStdout } from './cli-output.js';
import { CLIENT_COMMANDS, runClientCommand } from './client-commands.js';
import { reportCommandError } from './command-errors.js';
import { helpFor } from './help.js';
import { UsageError } from './usage-error.js';

/**
 * The entry point of the self-contained client (`npm run build:client` bundles it into
 * dist/rotor-client.mjs): only the commands that talk to a running server over HTTP, so the
 * bundle runs with a plain `node` and no node_modules on an application host. The server
 * commands (serve, migrate, bootstrap) need the database drivers and stay in main.ts;
 * scripts/build-client.mjs fails if anything imported here pulls a driver in.
 */
const USAGE = `usage: rotor <command>        (the client: serve, migrate and bootstrap are in the full install)
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
  agent --token-file F [--rotate-at-fraction 2/3] [--exec CMD] [--server URL]
                                keep the token in F fresh (first token: F, else ROTOR_TOKEN); docs/agent.md
`;

const SERVER_COMMANDS = new Set(['serve', 'migrate', 'bootstrap', 'recover-admin', 'key-status']);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  endQuietlyOnClosedStdout();
  const help = command !== undefined && CLIENT_COMMANDS.has(command) ? helpFor(argv) : undefined;
  if (help !== undefined) {
    process.stdout.write(help);
    return 0;
  }
  try {
    if (command !== undefined && CLIENT_COMMANDS.has(command)) return await runClientCommand(command, rest);
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        if (SERVER_COMMANDS.has(command))
          throw new UsageError(`"${command}" is a server command: run it from a full install of rotor (README.md)`);
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    return reportCommandError(
      e,
      (command !== undefined && CLIENT_COMMANDS.has(command) && helpFor([...argv, '--help'])) || USAGE,
    );
  }
}

// No top-level await: the same entry also bundles as CommonJS, which a Node single executable needs.
void main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code;
});
