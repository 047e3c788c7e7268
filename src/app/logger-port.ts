/**
 * Structured logging, as the use cases and adapters see it (implemented by `createLogger`,
 * src/runtime/logger.ts). Its own file so that anything may log without importing `AppContext`.
 */

/** Structured logging; fields must never carry a secret. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}
