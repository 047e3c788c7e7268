import { describe, expect, it } from 'vitest';
import { JsonLineBytes } from '../../src/api/json-line-bytes.js';

/** Random strings over ASCII, controls, quotes, Latin-1, BMP, astral pairs and lone surrogates. */
function randomString(): string {
  const pool = [0x22, 0x5c, 0x0a, 0x00, 0x1f, 0x7f, 0x80, 0xe9, 0x2028, 0x65e5, 0xd800, 0xdfff];
  let s = '';
  const n = Math.floor(Math.random() * 40);
  for (let i = 0; i < n; i++) {
    const r = Math.random();
    if (r < 0.6) s += String.fromCharCode(0x20 + Math.floor(Math.random() * 95));
    else if (r < 0.9) s += String.fromCharCode(pool[Math.floor(Math.random() * pool.length)]!);
    else s += '😀';
  }
  return s;
}

describe('JsonLineBytes', () => {
  it('writes every string as the UTF-8 bytes of JSON.stringify', () => {
    const b = new JsonLineBytes(8);
    for (let i = 0; i < 5000; i++) {
      const s = randomString();
      b.string(s);
      expect(b.take().equals(Buffer.from(JSON.stringify(s), 'utf8'))).toBe(true);
    }
  });

  it('writes integers, text and raw bytes, and grows past its first size', () => {
    const b = new JsonLineBytes(4);
    b.raw(Buffer.from('{"n":'));
    b.uint(7);
    b.raw(Buffer.from(',"m":'));
    b.uint(40_000);
    b.raw(Buffer.from(',"d":'));
    b.utf8('0.050');
    b.raw(Buffer.from(',"t":'));
    b.utf8('"ü"');
    b.raw(Buffer.from(',"s":'));
    b.string('x'.repeat(10_000));
    b.raw(Buffer.from('}'));
    expect(b.length).toBeGreaterThan(10_000);
    expect(JSON.parse(b.take().toString('utf8'))).toEqual({ n: 7, m: 40_000, d: 0.05, t: 'ü', s: 'x'.repeat(10_000) });
    expect(b.length).toBe(0);
  });

  it('hands over what it holds and starts a fresh buffer; truncate drops a tail', () => {
    const b = new JsonLineBytes(64);
    b.utf8('first');
    const taken = b.take();
    b.utf8('second');
    b.truncate(3);
    expect(taken.toString()).toBe('first');
    expect(b.take().toString()).toBe('sec');
    expect(b.take().length).toBe(0);
  });
});
