import { agentCommand } from './agent-command.js';
import { stopSignal } from './command-errors.js';
import { eventsCommand } from './events-command.js';
import { tokenCommand } from './token-commands.js';
import { watchCommand } from './watch-command.js';

/** The commands that talk to a running server over HTTP, in the full CLI and in the client bundle alike. */
export const CLIENT_COMMANDS = new Set(['token', 'watch', 'events', 'agent']);

/**
 * Runs a client command (`token`, `watch`, `events`, `agent`) and returns its exit code, for both entry
 * points: src/cli/main.ts and the self-contained client, src/cli/client-main.ts. It imports
 * nothing of the server (no store, no database driver), so the client bundle can use it.
 */
export async function runClientCommand(command: string, rest: string[]): Promise<number> {
  switch (command) {
    case 'token':
      await tokenCommand(rest, process.env);
      return 0;
    case 'watch':
      await watchCommand(rest, process.env, stopSignal());
      return 0;
    case 'events':
      await eventsCommand(rest, process.env);
      return 0;
    default: {
      const result = await agentCommand(rest, process.env, stopSignal());
      if (result.code !== 0) process.stderr.write(`rotor agent: ${result.message}\n`);
      return result.code;
    }
  }
}
