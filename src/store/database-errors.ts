import { RotorError } from '../domain/errors.js';

/** Node socket errors that mean the database cannot be reached right now. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

/**
 * PostgreSQL SQLSTATEs that say the server or the connection failed, not the statement:
 * class 08 (connection exception) is matched by prefix; 57P01-57P03 admin/crash shutdown and
 * "cannot connect now" (a restart); 53300 too many connections; 57014 query canceled, which is
 * what `statement_timeout` raises; 25P03 idle-in-transaction timeout.
 */
const PG_STATES = new Set(['57P01', '57P02', '57P03', '53300', '57014', '25P03']);

/** SQLite result codes of the same kind: another process holds the lock past busy_timeout, I/O failed. */
const SQLITE_CODES = new Set(['SQLITE_BUSY', 'SQLITE_IOERR', 'SQLITE_CANTOPEN', 'SQLITE_FULL', 'SQLITE_PROTOCOL']);

/** Messages of pg and knex for a connection that died or never came (they carry no code). */
const CONNECTION_MESSAGES = [
  /Connection terminated/i,
  /Connection ended unexpectedly/i,
  /Query read timeout/i,
  /timeout exceeded when trying to connect/i,
  /Client has encountered a connection error/i,
  /Client was closed and is not queryable/i,
  /Unable to acquire a connection/i,
];

/** Why the database is unavailable, in words a client may see (no host, no SQL, no secret). */
export type UnavailableReason = 'timeout' | 'busy' | 'connection';

/** Classifies a driver error; undefined when it is not a database availability failure. */
export function unavailableReason(e: unknown): UnavailableReason | undefined {
  if (!(e instanceof Error)) return undefined;
  if (e.name === 'KnexTimeoutError') return 'timeout';
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (code === '57014') return 'timeout';
    if (PG_STATES.has(code) || code.startsWith('08')) return 'connection';
    if (NETWORK_CODES.has(code)) return 'connection';
    if (code === 'SQLITE_BUSY') return 'busy';
    if (SQLITE_CODES.has(code)) return 'connection';
  }
  if (/Query read timeout/i.test(e.message)) return 'timeout';
  if (CONNECTION_MESSAGES.some((m) => m.test(e.message))) return 'connection';
  return e.cause instanceof Error && e.cause !== e ? unavailableReason(e.cause) : undefined;
}

const MESSAGES: Record<UnavailableReason, string> = {
  timeout: 'database unavailable: the statement timed out; retry shortly',
  busy: 'database unavailable: it stayed locked by another process; retry shortly',
  connection: 'database unavailable: the connection failed; retry shortly',
};

/**
 * The store's one translation of driver failures: a lost or overloaded database becomes the
 * domain's `unavailable` error (gRPC UNAVAILABLE, HTTP 503 `temporarily_unavailable`); every
 * other error passes through unchanged. The original error is kept as `cause` for the log.
 */
export function asStoreError(e: unknown): unknown {
  if (e instanceof RotorError) return e;
  const reason = unavailableReason(e);
  if (reason === undefined) return e;
  return new RotorError('unavailable', MESSAGES[reason], { cause: e });
}

/**
 * Wraps every method of a repository so a rejected (or thrown) driver error leaves through
 * `asStoreError`. `onUnavailable` sees each translated failure (the server logs it).
 */
export function guardRepository<T extends object>(repo: T, onUnavailable: (e: RotorError) => void): T {
  const translate = (e: unknown): never => {
    const mapped = asStoreError(e);
    if (mapped !== e) onUnavailable(mapped as RotorError);
    throw mapped;
  };
  return new Proxy(repo, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        let out: unknown;
        try {
          out = (value as (...a: unknown[]) => unknown).apply(target, args);
        } catch (e) {
          return translate(e);
        }
        return out instanceof Promise ? out.catch(translate) : out;
      };
    },
  });
}
