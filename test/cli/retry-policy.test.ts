import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { backoffDelay, retryAfterMs, retryDelay } from '../../src/cli/retry-policy.js';

const backoff = { baseMs: 100, maxMs: 1_000, random: () => 0.5 };
const limited = (value: string) => new ConnectError('rate limited', Code.ResourceExhausted, { 'retry-after': value });

describe('retry policy of the agent and rotor watch', () => {
  it("reads a brake's retry-after (whole seconds) from a RESOURCE_EXHAUSTED answer, and nothing else", () => {
    expect(retryAfterMs(limited('7'))).toBe(7_000);
    expect(retryAfterMs(limited(' 12 '))).toBe(12_000);
    // A cap of a day: a larger value is read as a day.
    expect(retryAfterMs(limited('999999999'))).toBe(86_400_000);
    for (const bad of ['', 'soon', '-1', '1.5', 'Wed, 21 Oct 2026 07:28:00 GMT'])
      expect(retryAfterMs(limited(bad))).toBeUndefined();
    // The stream caps answer RESOURCE_EXHAUSTED without a wait; other codes never carry one.
    expect(retryAfterMs(new ConnectError('too many streams', Code.ResourceExhausted))).toBeUndefined();
    expect(retryAfterMs(new ConnectError('down', Code.Unavailable, { 'retry-after': '7' }))).toBeUndefined();
    expect(retryAfterMs(new Error('plain'))).toBeUndefined();
  });

  it('waits the longer of the backoff and the asked wait (plus up to a tenth of it)', () => {
    expect(retryDelay(backoff, 0, limited('3'))).toBe(3_150);
    expect(retryDelay({ ...backoff, random: () => 0 }, 0, limited('3'))).toBe(3_000);
    // A backoff already longer than the asked wait stays.
    expect(retryDelay({ baseMs: 10_000, maxMs: 60_000, random: () => 0.5 }, 3, limited('1'))).toBe(
      backoffDelay({ baseMs: 10_000, maxMs: 60_000, random: () => 0.5 }, 3),
    );
    expect(retryDelay(backoff, 2, new ConnectError('down', Code.Unavailable))).toBe(backoffDelay(backoff, 2));
  });
});
