/** The base62 alphabet used for secrets: URL-, header- and shell-safe, no padding. */
export const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** Encodes a non-negative integer as exactly `width` base62 digits (left-padded with '0'). */
export function encodeBase62Fixed(value: number, width: number): string {
  let out = '';
  let v = value;
  for (let i = 0; i < width; i++) {
    out = BASE62[v % 62]! + out;
    v = Math.floor(v / 62);
  }
  if (v !== 0) throw new RangeError(`value does not fit in ${width} base62 digits`);
  return out;
}

/**
 * Maps random bytes to `count` uniformly distributed base62 characters by rejection sampling
 * (bytes >= 248 are dropped, so there is no modulo bias). `more` supplies fresh bytes on demand.
 */
export function uniformBase62(count: number, more: (n: number) => Uint8Array): string {
  let out = '';
  while (out.length < count) {
    const bytes = more(Math.max(16, Math.ceil((count - out.length) * 1.1)));
    for (const b of bytes) {
      if (b < 248) out += BASE62[b % 62]!;
      if (out.length === count) break;
    }
  }
  return out;
}

/** True when every character of `text[start, end)` is in the base62 alphabet (checked in place, no slice). */
export function isBase62(text: string, start = 0, end = text.length): boolean {
  for (let i = start; i < end; i++) if (base62Digit(text.charCodeAt(i)) < 0) return false;
  return true;
}

/** The value of one base62 character code (see BASE62), or -1 for any other character. */
export function base62Digit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48; // 0-9
  if (code >= 65 && code <= 90) return code - 55; // A-Z
  if (code >= 97 && code <= 122) return code - 61; // a-z
  return -1;
}

/**
 * The number that `text[start, end)` encodes as base62 digits (the inverse of
 * encodeBase62Fixed), or -1 when a character is not base62. Exact for up to 8 digits.
 */
export function decodeBase62(text: string, start: number, end: number): number {
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = base62Digit(text.charCodeAt(i));
    if (d < 0) return -1;
    v = v * 62 + d;
  }
  return v;
}
