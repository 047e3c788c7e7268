import { describe, expect, it } from 'vitest';
import { BASE62, encodeBase62Fixed } from '../../src/domain/base62.js';
import { crc32 } from '../../src/domain/crc32.js';
import {
  MAX_SECRET_LENGTH,
  SECRET_CHECKSUM_CHARS,
  SECRET_RANDOM_CHARS,
  displayPrefix,
  formatSecret,
  parseSecret,
} from '../../src/domain/token-secret.js';
import { SECRET_PREFIX, TOKEN_KINDS } from '../../src/domain/token-kind.js';
import { expectRotorError, seededRandom } from './fixtures.js';

/** Replaces the character at `index` with a different base62 character. */
function flip(secret: string, index: number): string {
  const c = secret[index]!;
  const other = c === 'a' ? 'b' : 'a';
  return secret.slice(0, index) + other + secret.slice(index + 1);
}

describe('formatSecret', () => {
  it.each(TOKEN_KINDS)('produces prefix + 43 base62 + 6 checksum characters for %s', (kind) => {
    const secret = formatSecret(kind, seededRandom(`format-${kind}`));
    const prefix = SECRET_PREFIX[kind];
    expect(SECRET_RANDOM_CHARS).toBe(43);
    expect(SECRET_CHECKSUM_CHARS).toBe(6);
    expect(secret.startsWith(prefix)).toBe(true);
    expect(secret).toHaveLength(prefix.length + 43 + 6);
    expect(secret.slice(prefix.length)).toMatch(/^[0-9A-Za-z]{49}$/);
    expect(secret.length).toBeLessThanOrEqual(MAX_SECRET_LENGTH);
  });

  it('ends in the base62 CRC-32 of prefix + random part', () => {
    const secret = formatSecret('service_account', seededRandom('crc'));
    const body = secret.slice(0, -6);
    expect(secret.slice(-6)).toBe(encodeBase62Fixed(crc32(body), 6));
  });

  it('is deterministic for the same byte stream and differs for another', () => {
    const a = formatSecret('personal', seededRandom('same'));
    const b = formatSecret('personal', seededRandom('same'));
    const c = formatSecret('personal', seededRandom('other'));
    expect(a).toBe(b);
    expect(c).not.toBe(a);
  });

  it('drops bytes >= 248 (rejection sampling) instead of folding them onto the alphabet', () => {
    // 248..255 must be skipped; 0 -> '0', 61 -> 'z', 62 -> '0', 247 -> 247 % 62 = 61 -> 'z'.
    const pattern = [248, 255, 0, 61, 62, 247];
    const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => pattern[i % pattern.length]!);
    const secret = formatSecret('personal', bytes);
    const random = secret.slice(SECRET_PREFIX.personal.length, -6);
    expect(random).toBe(`${'0z'.repeat(21)}0`);
  });

  it('uses every base62 character, with no visible bias, over many secrets', () => {
    const random = seededRandom('uniformity');
    const counts = new Map<string, number>();
    const secrets = 2000;
    for (let i = 0; i < secrets; i++) {
      const s = formatSecret('project', random).slice(SECRET_PREFIX.project.length, -6);
      for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    expect([...counts.keys()].sort().join('')).toBe([...BASE62].sort().join(''));
    // Expected ~1387 per character; modulo bias (b % 62 over all 256 values) would put the first
    // eight characters ~21% above the mean, so ±10% catches it while noise stays under ~3%.
    const expected = (secrets * 43) / 62;
    for (const [ch, n] of counts) {
      expect(n / expected, `frequency of ${ch}`).toBeGreaterThan(0.9);
      expect(n / expected, `frequency of ${ch}`).toBeLessThan(1.1);
    }
  });
});

describe('parseSecret', () => {
  it.each(TOKEN_KINDS)('round-trips a %s secret and reports its kind', (kind) => {
    const secret = formatSecret(kind, seededRandom(`roundtrip-${kind}`));
    expect(parseSecret(secret)).toEqual({ kind, secret });
  });

  it('rejects a secret with one character changed in the random part (checksum)', () => {
    const secret = formatSecret('personal', seededRandom('flip'));
    const tampered = flip(secret, SECRET_PREFIX.personal.length + 10);
    const err = expectRotorError(() => parseSecret(tampered), 'invalid_token', 'checksum does not match');
    expect(err.message).not.toContain(tampered);
  });

  it('rejects a non-base62 character anywhere after the prefix as malformed, checksum included', () => {
    const secret = formatSecret('project', seededRandom('non-base62'));
    for (const i of [
      SECRET_PREFIX.project.length,
      SECRET_PREFIX.project.length + 20,
      secret.length - SECRET_CHECKSUM_CHARS,
      secret.length - 1,
    ]) {
      for (const bad of ['-', '_', '+', '/', '=', ' ']) {
        const tampered = secret.slice(0, i) + bad + secret.slice(i + 1);
        expectRotorError(() => parseSecret(tampered), 'invalid_token', 'token is malformed');
      }
    }
  });

  it('accepts exactly the checksum formatSecret writes (all six digits compared)', () => {
    const secret = formatSecret('personal', seededRandom('checksum-digits'));
    const body = secret.slice(0, -SECRET_CHECKSUM_CHARS);
    expect(secret.slice(-SECRET_CHECKSUM_CHARS)).toBe(encodeBase62Fixed(crc32(body), SECRET_CHECKSUM_CHARS));
    // A checksum that differs only by a leading digit still fails (no truncation to 32 bits).
    const wrongLead = body + BASE62[(BASE62.indexOf(secret[body.length]!) + 1) % 62] + secret.slice(body.length + 1);
    expectRotorError(() => parseSecret(wrongLead), 'invalid_token', 'checksum does not match');
  });

  it('rejects a secret with one character changed in the checksum', () => {
    const secret = formatSecret('group', seededRandom('flip-checksum'));
    expectRotorError(() => parseSecret(flip(secret, secret.length - 1)), 'invalid_token', 'checksum does not match');
  });

  it('rejects every single-character change at every position of the random part', () => {
    const secret = formatSecret('personal', seededRandom('flip-all'));
    const start = SECRET_PREFIX.personal.length;
    for (let i = start; i < secret.length; i++) {
      expectRotorError(() => parseSecret(flip(secret, i)), 'invalid_token', 'token checksum does not match');
    }
  });

  it('rejects a valid body under another kind prefix (the prefix is checksummed)', () => {
    const secret = formatSecret('personal', seededRandom('swap-prefix'));
    const swapped = SECRET_PREFIX.project + secret.slice(SECRET_PREFIX.personal.length);
    expectRotorError(() => parseSecret(swapped), 'invalid_token', 'checksum does not match');
  });

  it('rejects empty input', () => {
    expectRotorError(() => parseSecret(''), 'invalid_token', 'token is empty');
  });

  it('rejects oversized input before looking at it, without echoing it', () => {
    const huge = `rtr_pat_${'A'.repeat(10_000)}`;
    const err = expectRotorError(() => parseSecret(huge), 'invalid_token', 'malformed');
    expect(err.message.length).toBeLessThan(100);
  });

  it('rejects one character over the maximum length', () => {
    expectRotorError(() => parseSecret('x'.repeat(MAX_SECRET_LENGTH + 1)), 'invalid_token', 'token is malformed');
  });

  it.each([
    ['unknown prefix', `ghp_${'a'.repeat(49)}`],
    ['no prefix', 'a'.repeat(49)],
    ['truncated', null],
    ['one extra character', 'extra'],
    ['non-base62 character', 'dash'],
    ['whitespace around it', 'space'],
  ])('rejects malformed input (%s) without echoing it', (_label, variant) => {
    const secret = formatSecret('personal', seededRandom('malformed'));
    const input =
      variant === null
        ? secret.slice(0, -1)
        : variant === 'extra'
          ? `${secret}a`
          : variant === 'dash'
            ? `${secret.slice(0, 20)}-${secret.slice(21)}`
            : variant === 'space'
              ? ` ${secret}`
              : variant;
    const err = expectRotorError(() => parseSecret(input), 'invalid_token', 'token is malformed');
    expect(err.message).not.toContain(input);
    expect(err.message).not.toContain(input.slice(8, 20));
  });

  it('never puts any part of the presented secret into the error or its details', () => {
    const secret = formatSecret('service_account', seededRandom('no-echo'));
    const tampered = flip(secret, 15);
    const err = expectRotorError(() => parseSecret(tampered), 'invalid_token', 'checksum');
    const random = tampered.slice(SECRET_PREFIX.service_account.length);
    for (let i = 0; i + 6 <= random.length; i++) {
      expect(err.message).not.toContain(random.slice(i, i + 6));
    }
    expect(JSON.stringify(err.details)).not.toContain(random.slice(0, 6));
  });
});

describe('displayPrefix', () => {
  it('shows the kind prefix plus four characters, never the whole secret', () => {
    const secret = formatSecret('personal', seededRandom('display'));
    const shown = displayPrefix(secret);
    expect(shown).toBe(secret.slice(0, SECRET_PREFIX.personal.length + 4));
    expect(shown).toHaveLength(12);
  });

  it('uses the right prefix length for the shorter service account prefix', () => {
    const secret = formatSecret('service_account', seededRandom('display-sa'));
    expect(displayPrefix(secret)).toBe(secret.slice(0, 'rtr_sa_'.length + 4));
  });
});
