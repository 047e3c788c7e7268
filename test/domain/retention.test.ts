import { describe, expect, it } from 'vitest';
import { retentionCutoff, writtenBefore, type AgedEvent } from '../../src/domain/retention.js';

const DAY = 86_400_000;
const CUTOFF = 1_000 * DAY;
const old = (type: AgedEvent['type'] = 'created'): AgedEvent => ({ type, occurredAt: CUTOFF - DAY });
const young = (type: AgedEvent['type'] = 'created'): AgedEvent => ({ type, occurredAt: CUTOFF });
/** An `expired` event: `occurredAt` is the token's expiry, which says nothing about when it was written. */
const expired = (occurredAt: number): AgedEvent => ({ type: 'expired', occurredAt });

describe('retentionCutoff', () => {
  it('is now minus the retention in days; 0 days keeps everything', () => {
    expect(retentionCutoff(100 * DAY, 90)).toBe(10 * DAY);
    expect(retentionCutoff(100 * DAY, 0)).toBeUndefined();
  });
});

describe('writtenBefore: the prefix of the log written before the cutoff', () => {
  it('ends at the first event written at or after the cutoff', () => {
    expect(writtenBefore([old(), old('rotated'), young(), old()], CUTOFF)).toEqual({ count: 2, open: false });
    expect(writtenBefore([young(), old()], CUTOFF)).toEqual({ count: 0, open: false });
  });

  it('a whole page of old events is open: the next page may hold more', () => {
    expect(writtenBefore([old(), old('expiring_soon')], CUTOFF)).toEqual({ count: 2, open: true });
    expect(writtenBefore([], CUTOFF)).toEqual({ count: 0, open: true });
  });

  it('judges an `expired` event by the next event that is not one, never by its own occurred_at (the expiry)', () => {
    // Expired long ago but written just now, after a younger event: kept with everything after it.
    expect(writtenBefore([old(), young(), expired(CUTOFF - 300 * DAY)], CUTOFF)).toEqual({ count: 1, open: false });
    // Written before an old event: as old as it.
    expect(writtenBefore([expired(CUTOFF + DAY), old()], CUTOFF)).toEqual({ count: 2, open: true });
    // Trailing `expired` events: not counted yet; `open` asks the caller to look ahead.
    expect(writtenBefore([old(), expired(CUTOFF - 300 * DAY), expired(CUTOFF - 300 * DAY)], CUTOFF)).toEqual({
      count: 1,
      open: true,
    });
    expect(writtenBefore([expired(CUTOFF - 300 * DAY)], CUTOFF)).toEqual({ count: 0, open: true });
  });
});
