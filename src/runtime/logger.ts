import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { AccessLineWriter } from '../api/access-log.js';
import type { Logger } from '../app/logger-port.js';
import { redactSecrets, type LogFormat, type LogLevel } from './log-lines.js';

export {
  LOG_FORMATS,
  LOG_LEVELS,
  createLineLogger,
  errorChain,
  redactSecrets,
  type ErrorLink,
  type LogFormat,
  type LogLevel,
} from './log-lines.js';

/**
 * Field names whose values pino replaces with `[redacted]` wherever a log call puts them, at the
 * top level or one object down (`headers.authorization`, `request.idempotency_key`): bearer
 * credentials, token secrets, idempotency keys, JWTs and proofs. No log call of Rotor writes any of
 * them; this is the first net, by name. The second, by shape, is `redactSecrets` over every line.
 */
export const REDACTED_FIELDS = [
  'authorization',
  'secret',
  'token',
  'subject_token',
  'actor_token',
  'access_token',
  'refresh_token',
  'idempotency_key',
  'idempotencyKey',
  'idempotency-key',
  'jwt',
  'proof',
  'dpop',
  'password',
  'cookie',
] as const;

/** pino redaction paths of REDACTED_FIELDS: each name at the top level and one level down. */
export const REDACT_PATHS: string[] = REDACTED_FIELDS.flatMap((f) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(f) ? f : `["${f}"]`;
  return key.startsWith('[') ? [key, `*${key}`] : [key, `*.${key}`];
});

/** The server's logger: the port's three levels, `debug`, whether a level is written, and access lines. */
export interface RotorLogger extends Logger, AccessLineWriter {
  debug(message: string, fields?: Record<string, unknown>): void;
  /** False when a line of `level` would be dropped: callers skip building its fields. */
  isLevelEnabled(level: LogLevel): boolean;
}

/** Options of createLogger. */
export interface LoggerOptions {
  /**
   * Both nets, by name (REDACT_PATHS) and by shape (`redactSecrets`); on unless turned off. Tests
   * turn them off so that their leak checks see what the code really tried to log.
   */
  redact?: boolean;
  /** `pretty`: through pino-pretty (a terminal); `json` (default): one JSON object a line. */
  format?: LogFormat;
}

/**
 * The server's logger, on pino. Lines are `{"level":"info","time":"<ISO 8601>",…fields,"msg":…}`,
 * written to `write` (tests, the CLI's stderr) or, by default, to stdout through pino's
 * asynchronous destination (lines written while a write is pending go out together; flushed on
 * exit). Fields are the caller's responsibility (no secrets); both redaction nets stay on in
 * production so that a mistake cannot leak a token.
 */
export function createLogger(
  level: LogLevel,
  write?: (line: string) => void,
  options: LoggerOptions = {},
): RotorLogger {
  const redact = options.redact ?? true;
  const format = options.format ?? 'json';
  const sink = destination(write, format);
  const stream: DestinationStream = redact ? { write: (line) => sink.write(redactSecrets(line)) } : sink;
  const common = {
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads pino's numeric levels; JSON lines keep Rotor's names (`"level":"warn"`).
    ...(format === 'json' && { formatters: { level: (label: string) => ({ level: label }) } }),
  };
  const logger = pino({ ...common, ...(redact && { redact: { paths: REDACT_PATHS, censor: '[redacted]' } }) }, stream);
  // Access lines (src/api/access-log.ts) carry only fields that code sets from checked values, no
  // object a caller passes, so they skip the by-name pass, which cost more than the rest of the
  // line (bench/README.md, "Per-call cost"); the by-shape net still sees them, on the same stream.
  const access = pino(common, stream);
  return wrap(logger, (fields) => access.info(fields, 'access'));
}

function destination(write: ((line: string) => void) | undefined, format: LogFormat): DestinationStream {
  if (format === 'pretty') {
    const prettify = prettyFactory({
      colorize: write === undefined && process.stdout.isTTY,
      translateTime: 'SYS:standard',
    });
    const out = write ?? ((l: string) => void process.stdout.write(l));
    return { write: (line) => out(prettify(line)) };
  }
  // Lines go out in writes of at least 4 KiB, and at least every 100 ms: one write per line cost
  // more than building it (bench/README.md, "Per-call cost"). pino flushes the rest on exit.
  return write === undefined
    ? pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 100 } as never)
    : { write };
}

function wrap(logger: PinoLogger, access: (fields: Record<string, unknown>) => void): RotorLogger {
  const at = (lvl: LogLevel) => (message: string, fields?: Record<string, unknown>) => {
    if (fields === undefined) logger[lvl](message);
    else logger[lvl](fields, message);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    isLevelEnabled: (lvl) => logger.isLevelEnabled(lvl),
    access,
  };
}
