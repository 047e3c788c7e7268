import type { Logger } from '../app/logger-port.js';

/** Log levels in increasing severity. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `ROTOR_LOG_FORMAT`: JSON lines (the default), or pino-pretty's coloured lines for a terminal. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Anything shaped like a Rotor secret is masked before a line is written, as a last guard. */
const SECRET_SHAPE = /rtr_(pat|prj|grp|sa)_[0-9A-Za-z]{8,}/g;

/** A signed JWT (header and payload are JSON objects, so both start `eyJ`). */
const JWT_SHAPE = /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+/g;

/** The literal each shape starts with: text with neither (almost every line) is not scanned. */
const SECRET_START = 'rtr_';
const JWT_START = 'eyJ';

/** Masks every Rotor secret (keeping its kind prefix) and every signed JWT in a string. */
export function redactSecrets(text: string): string {
  if (!text.includes(SECRET_START) && !text.includes(JWT_START)) return text;
  return text
    .replace(SECRET_SHAPE, (_m, kind: string) => `rtr_${kind}_[redacted]`)
    .replace(JWT_SHAPE, '[redacted JWT]');
}

/**
 * `redactSecrets` over UTF-8 bytes of whole lines (the access log's gathered writes): bytes with
 * neither shape's start are returned as they are, after two byte searches; otherwise they are
 * masked as text (neither shape can span a line break).
 */
export function redactSecretBytes(bytes: Buffer): Buffer {
  if (bytes.indexOf(SECRET_START) === -1 && bytes.indexOf(JWT_START) === -1) return bytes;
  return Buffer.from(redactSecrets(bytes.toString('utf8')), 'utf8');
}

/** One error of a cause chain as a log field shows it. */
export interface ErrorLink {
  name: string;
  message: string;
  /** A driver's or Node's code (`ECONNREFUSED`, a SQLSTATE, `SQLITE_BUSY`), when it has one. */
  code?: string;
}

/** How many links of a cause chain a log line shows (chains can be cyclic). */
const MAX_CHAIN = 5;

/**
 * `e` and the errors it was caused by (ES2022 `cause`), outermost first, as a log field: so a
 * translated failure (a `RotorError` with the driver error as its cause) logs why it happened.
 * Empty for undefined; a thrown non-Error is shown by its string form.
 */
export function errorChain(e: unknown): ErrorLink[] {
  const chain: ErrorLink[] = [];
  const seen = new Set<unknown>();
  for (
    let link = e;
    link !== undefined && !seen.has(link) && chain.length < MAX_CHAIN;
    link = link instanceof Error ? link.cause : undefined
  ) {
    seen.add(link);
    if (!(link instanceof Error)) {
      chain.push({ name: typeof link, message: String(link) });
      break;
    }
    const code =
      'code' in link && (typeof link.code === 'string' || typeof link.code === 'number')
        ? String(link.code)
        : undefined;
    chain.push({ name: link.name, message: link.message, ...(code === undefined ? {} : { code }) });
  }
  return chain;
}

/**
 * A dependency-free JSON-lines logger, for the client commands (`rotor agent` logs on stderr
 * through it): they build into one file with no packages (README, "Installing the client"), so
 * they cannot use the server's pino logger (src/runtime/logger.ts). Same line shape and the same
 * safety net: every line is passed through `redactSecrets`.
 */
export function createLineLogger(
  level: LogLevel,
  write: (line: string) => void = (l) => process.stdout.write(l),
  options: { redact?: boolean } = {},
): Logger & { debug(m: string, f?: Record<string, unknown>): void } {
  const min = LOG_LEVELS.indexOf(level);
  const redact = options.redact ?? true;
  const emit = (lvl: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    const line = JSON.stringify({ time: new Date().toISOString(), level: lvl, msg: message, ...fields });
    write(`${redact ? redactSecrets(line) : line}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
