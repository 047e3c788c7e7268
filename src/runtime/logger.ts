import type { Logger } from '../app/logger-port.js';

/** Log levels in increasing severity. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Anything shaped like a Rotor secret is masked before a line is written, as a last guard. */
const SECRET_SHAPE = /rtr_(pat|prj|grp|sa)_[0-9A-Za-z]{8,}/g;

/** A signed JWT (header and payload are JSON objects, so both start `eyJ`). */
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+/g;

/** Masks every Rotor secret (keeping its kind prefix) and every signed JWT in a string. */
export function redactSecrets(text: string): string {
  return text.replace(SECRET_SHAPE, (_m, kind: string) => `rtr_${kind}_[redacted]`).replace(JWT_SHAPE, '[redacted JWT]');
}

/**
 * A JSON-lines logger. Fields are the caller's responsibility (no secrets), and every line is
 * still passed through `redactSecrets` so a mistake cannot leak a token. Tests turn the safety
 * net off (`redact: false`) so that their leak checks see what the code really tried to log.
 */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (l) => process.stdout.write(l),
  options: { redact?: boolean } = {},
): Logger & { debug(m: string, f?: Record<string, unknown>): void } {
  const min = LOG_LEVELS.indexOf(level);
  const redact = options.redact ?? true;
  const emit = (lvl: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level: lvl, msg: message, ...fields });
    write((redact ? redactSecrets(line) : line) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
