import { ConnectError } from '@connectrpc/connect';
import { isRotorError } from '../domain/errors.js';
import { ConfigError } from '../runtime/config-error.js';
import { inCliTerms } from './cli-output.js';
import { UsageError } from './usage-error.js';

/**
 * What a failed command prints on stderr and the exit code it ends with, for `rotor` (main.ts)
 * and the self-contained client (client-main.ts) alike: 2 for usage and configuration mistakes
 * (with the usage text for the former), 1 for everything else. It imports nothing of the server
 * (no store, no database driver), so the client bundle can use it.
 */
export function reportCommandError(e: unknown, usage: string): number {
  if (
    e instanceof UsageError ||
    (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))
  ) {
    process.stderr.write(`rotor: ${e.message}\n${usage}`);
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

function codeName(e: ConnectError): string {
  return e.message.slice(1, e.message.indexOf(']'));
}

/** Aborts on SIGINT or SIGTERM, so long-running commands end cleanly with exit code 0. */
export function stopSignal(): AbortSignal {
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  return ac.signal;
}
