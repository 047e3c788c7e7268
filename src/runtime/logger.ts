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
  // Access lines are the only lines written per call: with the default destination (stdout, JSON)
  // they are gathered into large writes, and any other line first sends the gathered ones, so
  // lines keep their order.
  const batch = write === undefined && format === 'json' ? new LineBatch(sink, redact) : undefined;
  const out: DestinationStream = batch
    ? {
        write: (line) => {
          batch.flush();
          sink.write(line);
        },
      }
    : sink;
  const stream: DestinationStream = redact ? { write: (line) => out.write(redactSecrets(line)) } : out;
  const common = {
    level,
    base: undefined,
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads pino's numeric levels; JSON lines keep Rotor's names (`"level":"warn"`).
    ...(format === 'json' && { formatters: { level: (label: string) => ({ level: label }) } }),
  };
  const logger = pino({ ...common, ...(redact && { redact: { paths: REDACT_PATHS, censor: '[redacted]' } }) }, stream);
  // Access lines (src/api/access-log.ts) are built by the access log from its fixed fields, no
  // object a caller passes, so they skip pino's serialisation and its by-name pass, which cost
  // more than the rest of the call (bench/README.md, "Per-call cost"); they have pino's JSON line
  // shape (level, time, fields, msg) and the by-shape net still sees them.
  const infoOn = logger.isLevelEnabled('info');
  const infoLevel = format === 'json' ? '"info"' : '30';
  const time = isoClock();
  const accessLine = (members: string) => {
    if (!infoOn) return;
    const line = `{"level":${infoLevel},"time":"${time()}",${members},"msg":"access"}\n`;
    if (!batch) stream.write(line);
    else batch.push(line);
  };
  return wrap(logger, accessLine);
}

/**
 * Lines gathered into one write of at least BATCH_BYTES, or after at most BATCH_MS: one write
 * per line (pino's destination hands every write to libuv's thread pool) cost more per call than
 * building the line (bench/README.md, "Per-call cost"). Flushed on exit. With `redact`, the
 * by-shape net (`redactSecrets`) runs over each batch as it is written: the same lines are masked
 * as line by line (neither shape can span a line break), in one scan of the joined text instead
 * of a scan, and the flattening it needs, per line.
 */
class LineBatch {
  private lines: string[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sink: DestinationStream & { flushSync?: () => void },
    private readonly redact: boolean,
  ) {
    process.once('exit', () => {
      this.flush();
      try {
        this.sink.flushSync?.();
      } catch {
        // stdout already gone: nothing left to write to
      }
    });
  }

  push(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= BATCH_BYTES) this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), BATCH_MS);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.lines.length === 0) return;
    const text = this.lines.join('');
    this.lines = [];
    this.bytes = 0;
    this.sink.write(this.redact ? redactSecrets(text) : text);
  }
}

const BATCH_BYTES = 64 * 1024;
const BATCH_MS = 100;

/** `new Date().toISOString()`, made once per millisecond: many lines share one. */
function isoClock(): () => string {
  let at = 0;
  let text = '';
  return () => {
    const now = Date.now();
    if (now !== at) {
      at = now;
      text = new Date(now).toISOString();
    }
    return text;
  };
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
  // Asynchronous writes with no minimum length: a line goes out at once, and lines that arrive
  // while a write is under way go out together after it (access lines, the only lines written per
  // call, are gathered into large writes first: LineBatch). So no periodic flush, whose timer wrote
  // an empty string through libuv's thread pool ten times a second on an idle server. Buffer
  // content mode, each line encoded once here: in string mode the destination measured every
  // write with Buffer.byteLength (twice while a write was under way) before fs.write encoded it.
  // flushSync (on exit) writes what is left. maxWrite: a batch of access lines goes out in one
  // write. (bench/README.md, "Tenth session".)
  if (write !== undefined) return { write };
  const boom = pino.destination({ dest: 1, sync: false, maxWrite: 4 * BATCH_BYTES, contentMode: 'buffer' } as never);
  return {
    write: (line: string) => boom.write(Buffer.from(line) as never),
    flushSync: () => boom.flushSync(),
  } as DestinationStream;
}

function wrap(logger: PinoLogger, accessLine: (members: string) => void): RotorLogger {
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
    accessLine,
  };
}
