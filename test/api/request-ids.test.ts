import { describe, expect, it } from 'vitest';
import { RequestIds } from '../../src/api/request-ids.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request ids', () => {
  it('are version-4 UUIDs, all different, across many refills of the random pool', () => {
    const ids = new RequestIds();
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = ids.next();
      expect(id).toMatch(UUID_V4);
      seen.add(id);
    }
    expect(seen.size).toBe(10_000);
  });

  it('use every hex digit in every random position (the bytes are random, not a counter)', () => {
    const ids = new RequestIds();
    const digits = Array.from({ length: 36 }, () => new Set<string>());
    for (let i = 0; i < 2_000; i++) {
      const id = ids.next();
      for (let at = 0; at < id.length; at++) digits[at]!.add(id[at]!);
    }
    for (const [at, set] of digits.entries()) {
      if ([8, 13, 18, 23].includes(at)) expect([...set]).toEqual(['-']);
      else if (at === 14) expect([...set]).toEqual(['4']);
      else if (at === 19) expect(set.size).toBe(4);
      else expect(set.size).toBe(16);
    }
  });
});
