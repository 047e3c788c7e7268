import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { assessSecret } from '../../src/runtime/secret-strength.js';

const PASSPHRASE = 'correct horse battery staple, and then some more words';

describe('server secret strength (src/runtime/secret-strength.ts)', () => {
  it.each([
    ['hex (openssl rand -hex 32)', () => randomBytes(32).toString('hex'), 'hex', 32],
    ['upper-case hex', () => randomBytes(32).toString('hex').toUpperCase(), 'hex', 32],
    ['longer hex', () => randomBytes(64).toString('hex'), 'hex', 64],
    ['base64 with padding (openssl rand -base64 32)', () => randomBytes(32).toString('base64'), 'base64', 32],
    ['base64 without padding', () => randomBytes(32).toString('base64').replace(/=+$/, ''), 'base64', 32],
    ['base64url (the generated secret.key)', () => randomBytes(32).toString('base64url'), 'base64', 32],
    ['base64 of 48 bytes', () => randomBytes(48).toString('base64'), 'base64', 48],
    ['hex with a trailing newline', () => `${randomBytes(32).toString('hex')}\n`, 'hex', 32],
  ] as const)('%s: strong, every time out of 2000', (_name, make, encoding, bytes) => {
    for (let i = 0; i < 2000; i++) {
      const value = make();
      expect(assessSecret(value), value).toEqual({ strong: true, encoding, bytes });
    }
  });

  it('a value of hex digits and even length is hex, although it is also valid base64', () => {
    const hex = randomBytes(32).toString('hex');
    expect(Buffer.from(hex, 'base64')).toHaveLength(48);
    expect(assessSecret(hex)).toMatchObject({ encoding: 'hex', bytes: 32 });
    // Hex digits of odd length are not hex; 65 characters are no base64 either.
    expect(assessSecret(`${hex}a`)).toEqual({ strong: false, reason: 'it is not hex or base64' });
  });

  const random16 = randomBytes(16);
  it.each([
    ['32 × a (the finding; a is a hex digit)', 'a'.repeat(32), 'it decodes (as hex) to 16 bytes, fewer than 32'],
    ['32 × x', 'x'.repeat(32), 'it decodes (as base64) to 24 bytes, fewer than 32'],
    ['44 × x', 'x'.repeat(44), 'it repeats a block of 3 bytes'],
    ['64 × a', 'a'.repeat(64), 'it repeats a block of 1 byte'],
    ['all zero bytes', '0'.repeat(64), 'it repeats a block of 1 byte'],
    ['0123456789abcdef four times', '0123456789abcdef'.repeat(4), 'it repeats a block of 8 bytes'],
    ['16 random bytes twice', Buffer.concat([random16, random16]).toString('hex'), 'it repeats a block of 16 bytes'],
    ['16 random bytes as hex', random16.toString('hex'), 'it decodes (as hex) to 16 bytes, fewer than 32'],
    ['a passphrase', PASSPHRASE, 'it is not hex or base64'],
    ['hex of a passphrase', Buffer.from(PASSPHRASE).toString('hex'), 'it decodes to printable text, not random bytes'],
    [
      'base64 of a passphrase',
      Buffer.from(PASSPHRASE).toString('base64'),
      'it decodes to printable text, not random bytes',
    ],
    [
      'bytes 0-9 only (the first 40 digits of pi)',
      Buffer.from([...'3141592653589793238462643383279502884197'].map(Number)).toString('hex'),
      'it has only 10 distinct byte values (at least 16)',
    ],
    [
      'one byte value dominating',
      Buffer.from([...new Array<number>(24).fill(0), ...Array.from({ length: 15 }, (_, i) => 200 + i), 7]).toString(
        'hex',
      ),
      'its bytes have 2.57 bits of entropy each (at least 3.5)',
    ],
    ['mixed base64 alphabets', `${randomBytes(32).toString('base64url').slice(0, 40)}+/-_`, 'it is not hex or base64'],
    ['wrong padding', `${randomBytes(32).toString('base64url')}==`, 'it is not hex or base64'],
    [
      'stray bits after the last byte',
      `${randomBytes(32).toString('base64url').slice(0, 42)}B`,
      'it is not hex or base64',
    ],
    ['empty', '  ', 'it is not hex or base64'],
  ])('%s: weak', (_name, value, reason) => {
    const verdict = assessSecret(value);
    expect(verdict).toEqual({ strong: false, reason });
    if (!verdict.strong && value.trim() !== '') expect(verdict.reason).not.toContain(value.trim().slice(0, 8));
  });
});
