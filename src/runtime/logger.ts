import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { AccessLineWriter } from '../api/access-log.js';
import { JsonLineBytes } from '../api/json-line-bytes.js';
import type { Logger } from '../app/logger-port.js';
import { redactSecretBytes, redactSecrets, type LogFormat, type LogLevel } from './log-lines.js';

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
  // Access lines are the only lines written per call. With the default destination (stdout,
  // JSON) they are gathered into large writes (AccessLines), and any other line first sends the
  // gathered ones, so lines keep their order; elsewhere each goes out as a line of its own.
  const stdout = write === undefined && format === 'json' ? stdoutDestination() : undefined;
  // Otherwise `write` is set, or the format is pretty (which writes to stdout itself without one).
  const sink = stdout ?? (format === 'pretty' ? prettyDestination(write) : { write: write as (line: string) => void });
  let access: AccessLines | undefined;
  const out: DestinationStream = {
    write: (line) => {
      if (stdout) access?.flush();
      sink.write(line);
    },
  };
  const stream: DestinationStream = redact ? { write: (line) => out.write(redactSecrets(line)) } : out;
  const common = {
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads pino's numeric levels; JSON lines keep Rotor's names (`"level":"warn"`).
    ...(format === 'json' && { formatters: { level: (label: string) => ({ level: label }) } }),
  };
  const logger = pino({ ...common, ...(redact && { redact: { paths: REDACT_PATHS, censor: '[redacted]' } }) }, stream);
  // Access lines (src/api/access-log.ts) are written by the access log from its fixed fields, no
  // object a caller passes, so they skip pino's serialisation and its by-name pass, which cost
  // more than the rest of the call (bench/README.md, "Per-call cost"); they have pino's JSON line
  // shape (level, time, fields, msg) and the by-shape net still sees them.
  if (logger.isLevelEnabled('info')) {
    const send = stdout
      ? (bytes: Buffer) => stdout.writeBytes(redact ? redactSecretBytes(bytes) : bytes)
      : (bytes: Buffer) => stream.write(bytes.toString('utf8'));
    const lines = new AccessLines(format === 'json' ? '"info"' : '30', send, stdout !== undefined);
    access = lines;
    if (stdout)
      process.once('exit', () => {
        lines.flush();
        try {
          stdout.flushSync();
        } catch {
          // stdout already gone: nothing left to write to
        }
      });
  }
  return wrap(logger, access);
}

/**
 * The access lines of a logger: each built into one JsonLineBytes (the envelope here, the members
 * by the access log), then sent on. `batched` (stdout): gathered into one write of at least
 * BATCH_BYTES, or after at most BATCH_MS, since one write per line (pino's destination hands every
 * write to libuv's thread pool) cost more per call than building the line (bench/README.md,
 * "Per-call cost"); flushed on exit and before any other line. Otherwise each line is sent as it
 * is closed.
 */
class AccessLines {
  private readonly bytes = new JsonLineBytes(BATCH_BYTES + 8 * 1024);
  /** Where the line being built starts: everything before it is whole lines. */
  private lineStart = 0;
  private open = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly head: Buffer;
  private readonly clock = isoClock();

  constructor(
    level: string,
    private readonly send: (bytes: Buffer) => void,
    private readonly batched: boolean,
  ) {
    this.head = Buffer.from(`{"level":${level},"time":"`);
  }

  openAccessLine(): JsonLineBytes {
    // A line opened and never closed (its writer threw) is dropped here, not sent half-made.
    if (this.open) this.bytes.truncate(this.lineStart);
    this.open = true;
    this.lineStart = this.bytes.length;
    this.bytes.raw(this.head);
    this.bytes.raw(this.clock());
    return this.bytes;
  }

  closeAccessLine(): void {
    if (!this.open) return;
    this.open = false;
    this.bytes.raw(TAIL);
    this.lineStart = this.bytes.length;
    if (!this.batched || this.bytes.length >= BATCH_BYTES) this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), BATCH_MS);
      this.timer.unref();
    }
  }

  /** Sends the whole lines held. */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.open) this.bytes.truncate(this.lineStart);
    this.open = false;
    this.lineStart = 0;
    const bytes = this.bytes.take();
    if (bytes.length > 0) this.send(bytes);
  }
}

const TAIL = Buffer.from(',"msg":"access"}\n');
const BATCH_BYTES = 64 * 1024;
const BATCH_MS = 100;

/** `<ISO 8601 time>",` as bytes, made once per millisecond: many lines share one. */
function isoClock(): () => Buffer {
  let at = 0;
  let bytes = Buffer.alloc(0);
  return () => {
    const now = Date.now();
    if (now !== at) {
      at = now;
      bytes = Buffer.from(`${new Date(now).toISOString()}",`, 'latin1');
    }
    return bytes;
  };
}

/** pino-pretty's coloured lines (colour only on a terminal), to `write` or else stdout. */
function prettyDestination(write: ((line: string) => void) | undefined): DestinationStream {
  const prettify = prettyFactory({
    colorize: write === undefined && process.stdout.isTTY,
    translateTime: 'SYS:standard',
  });
  const out = write ?? ((l: string) => void process.stdout.write(l));
  return { write: (line) => out(prettify(line)) };
}

/**
 * The default destination (stdout, JSON): text lines, byte batches of whole lines, and a
 * synchronous flush for exit. Asynchronous writes with no minimum length: a line goes out at once,
 * and lines that arrive while a write is under way go out together after it (access lines, the
 * only lines written per call, are gathered into large writes first: AccessLines). So no periodic
 * flush, whose timer wrote an empty string through libuv's thread pool ten times a second on an
 * idle server. Buffer content mode, each line encoded once here: in string mode the destination
 * measured every write with Buffer.byteLength (twice while a write was under way) before fs.write
 * encoded it. maxWrite: a batch of access lines goes out in one write. (bench/README.md, "Tenth
 * session".)
 */
function stdoutDestination(): DestinationStream & { writeBytes(bytes: Buffer): void; flushSync(): void } {
  const boom = pino.destination({ dest: 1, sync: false, maxWrite: 4 * BATCH_BYTES, contentMode: 'buffer' } as never);
  return {
    write: (line: string) => boom.write(Buffer.from(line) as never),
    writeBytes: (bytes: Buffer) => boom.write(bytes as never),
    flushSync: () => boom.flushSync(),
  };
}

function wrap(logger: PinoLogger, access: AccessLines | undefined): RotorLogger {
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
    openAccessLine: () => access?.openAccessLine(),
    closeAccessLine: () => access?.closeAccessLine(),
  };
}
