import { parseDurationSeconds } from '../domain/expiry.js';
import { UsageError } from './usage-error.js';

/** Parses `90s`, `15m`, `12h`, `30d` (or plain seconds) into seconds; undefined if malformed (src/domain/expiry.ts). */
export function parseDuration(text: string): number | undefined {
  return parseDurationSeconds(text, { bareSeconds: true });
}

/** Parses a duration flag that must be positive; `flag` names it in the error. */
export function positiveDuration(text: string, flag: string): number {
  const s = parseDuration(text);
  if (s === undefined || s === 0) throw new UsageError(`${flag} must be a positive duration like 90s, 15m, 12h or 30d`);
  return s;
}
