import type { TokenEventType } from './token-event.js';

/** One day in milliseconds. */
const DAY_MS = 86_400_000;

/**
 * The instant before which tokens must have ended, and events have been written, for the
 * retention job to delete them (ROTOR_RETENTION_DAYS). Undefined for `0` days: keep everything.
 */
export function retentionCutoff(now: number, retentionDays: number): number | undefined {
  return retentionDays === 0 ? undefined : now - retentionDays * DAY_MS;
}

/** An event as the retention's age rule reads it, in sequence order. */
export interface AgedEvent {
  type: TokenEventType;
  occurredAt: number;
}

/**
 * How many events at the start of `page` (consecutive sequences of the log, oldest first) were
 * certainly written before `cutoff`, so that deleting them deletes a prefix of the log.
 *
 * The log has no write time. `occurred_at` is the write time for every event but `expired`,
 * whose `occurred_at` is the token's expiry (the scheduler may write it later, after an outage).
 * Sequences are drawn in write order, so an event was written no later than any event after it:
 * the prefix ends at the last event that is not `expired` and occurred before `cutoff`, and stops
 * at the first one that did not. `open` is true when the page held no such younger event: then
 * the `expired` events after `count` may still be old, which the next event that is not `expired`
 * decides (the caller looks ahead).
 */
export function writtenBefore(page: readonly AgedEvent[], cutoff: number): { count: number; open: boolean } {
  let count = 0;
  for (let i = 0; i < page.length; i++) {
    const e = page[i]!;
    if (e.type === 'expired') continue;
    if (e.occurredAt >= cutoff) return { count, open: false };
    count = i + 1;
  }
  return { count, open: true };
}
