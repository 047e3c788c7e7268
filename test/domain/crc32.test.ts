import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32 } from '../../src/domain/crc32.js';

describe('crc32', () => {
  it('matches the IEEE check value', () => {
    expect(crc32('123456789')).toBe(0xcbf43926);
  });

  it('is 0 for the empty string', () => {
    expect(crc32('')).toBe(0);
  });

  it('is an unsigned 32-bit integer', () => {
    const v = crc32('rtr_pat_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz');
    expect(Number.isInteger(v)).toBe(true);
    expect(v).toBeGreaterThanOrEqual(0);
    expect(v).toBeLessThanOrEqual(0xffffffff);
  });

  it('agrees with zlib on ASCII inputs', () => {
    for (const text of ['a', 'abc', 'rtr_sa_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg', 'The quick brown fox']) {
      expect(crc32(text), text).toBe(zlibCrc32(text));
    }
  });

  it('covers only the first `end` characters when given', () => {
    expect(crc32('123456789tail', 9)).toBe(0xcbf43926);
    expect(crc32('abc', 0)).toBe(0);
  });
});
