import { describe, expect, it } from 'vitest';
import {
  BASE62,
  base62Digit,
  decodeBase62,
  encodeBase62Fixed,
  isBase62,
  uniformBase62,
} from '../../src/domain/base62.js';
import { seededRandom } from './fixtures.js';

describe('BASE62', () => {
  it('is 62 distinct alphanumeric characters', () => {
    expect(BASE62).toHaveLength(62);
    expect(new Set(BASE62).size).toBe(62);
    expect(BASE62).toMatch(/^[0-9A-Za-z]+$/);
  });
});

describe('encodeBase62Fixed', () => {
  it('left-pads to the requested width', () => {
    expect(encodeBase62Fixed(0, 6)).toBe('000000');
    expect(encodeBase62Fixed(61, 3)).toBe('00z');
    expect(encodeBase62Fixed(62, 3)).toBe('010');
  });

  it('encodes the largest CRC-32 in six digits', () => {
    const encoded = encodeBase62Fixed(0xffffffff, 6);
    expect(encoded).toHaveLength(6);
    const decoded = [...encoded].reduce((acc, ch) => acc * 62 + BASE62.indexOf(ch), 0);
    expect(decoded).toBe(0xffffffff);
  });

  it('throws a RangeError when the value does not fit', () => {
    expect(() => encodeBase62Fixed(62 ** 2, 2)).toThrow(RangeError);
    expect(() => encodeBase62Fixed(62 ** 2, 2)).toThrow('does not fit in 2 base62 digits');
  });
});

describe('uniformBase62', () => {
  it('returns exactly `count` base62 characters', () => {
    for (const count of [1, 22, 43, 100]) {
      const out = uniformBase62(count, seededRandom(`count-${count}`));
      expect(out).toHaveLength(count);
      expect(isBase62(out)).toBe(true);
    }
  });

  it('asks for more bytes when rejection sampling drops them', () => {
    let calls = 0;
    const source = (n: number) => {
      calls++;
      // The first call yields only rejected bytes; later calls yield byte 5 ('5').
      return new Uint8Array(n).fill(calls === 1 ? 250 : 5);
    };
    expect(uniformBase62(10, source)).toBe('5555555555');
    expect(calls).toBe(2);
  });
});

describe('isBase62', () => {
  it('accepts the alphabet and the empty string, refuses anything else', () => {
    expect(isBase62(BASE62)).toBe(true);
    expect(isBase62('')).toBe(true);
    for (const bad of ['-', '_', ' ', '+', '/', '=', 'é', 'abc\n']) {
      expect(isBase62(bad), JSON.stringify(bad)).toBe(false);
    }
  });
});

describe('base62Digit and decodeBase62', () => {
  it('gives every alphabet character its index and -1 to anything else', () => {
    for (let i = 0; i < BASE62.length; i++) expect(base62Digit(BASE62.charCodeAt(i))).toBe(i);
    for (const bad of ['/', ':', '@', '[', '`', '{', '-', '_', ' ', '\u00e9'])
      expect(base62Digit(bad.charCodeAt(0)), bad).toBe(-1);
  });

  it('inverts encodeBase62Fixed on a range of the string', () => {
    for (const v of [0, 1, 61, 62, 3843, 0xcbf43926, 0xffffffff, 62 ** 6 - 1]) {
      expect(decodeBase62(`xx${encodeBase62Fixed(v, 6)}yy`, 2, 8), String(v)).toBe(v);
    }
  });

  it('is -1 when a character in the range is not base62', () => {
    expect(decodeBase62('00-000', 0, 6)).toBe(-1);
    expect(decodeBase62('-00000', 1, 6)).toBe(0);
  });
});
