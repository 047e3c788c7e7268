/**
 * Strength rules of the server secret (`ROTOR_SECRET` or `<data dir>/secret.key`). Every token
 * digest and every sealed JWT signing key is keyed by it, so a guessable value can be confirmed
 * offline from a database dump (the GCM tag of a sealed key answers "right guess" or not) and
 * yields the signing keys. The value must therefore encode at least 32 random bytes:
 *
 * - hex: only hex digits (either case) and an even length; at least 64 digits;
 * - otherwise base64 (`+/`) or base64url (`-_`), one alphabet, `=` padding optional but correct,
 *   canonical (no stray bits), decoding to at least 32 bytes.
 *
 * A value of hex digits and even length is always read as hex, although it would also be valid
 * base64. The decoded bytes must then not look like anything but randomness: no repetition of a
 * block (a period of at most half the length), at least 16 distinct byte values, at least 3.5
 * bits of Shannon entropy per byte over their histogram, and not only printable ASCII (hex or
 * base64 of a passphrase). 32 random bytes fail these with a probability below 10^-13
 * (printable ASCII: (95/256)^32), so a value from `openssl rand -hex 32` or
 * `openssl rand -base64 32` passes. The checks catch mistakes, not every weak value: a
 * value derived from a guessable seed passes them, so generate it, never write it.
 *
 * The bytes that key the HMACs stay the UTF-8 bytes of the string as given (src/runtime/config.ts),
 * not the decoded ones: that is how every existing database was keyed, and the string carries the
 * same entropy as the bytes it encodes.
 */

import { smallestPeriod } from '../domain/key-material.js';

/** Fewest random bytes the secret must encode. */
export const SECRET_MIN_BYTES = 32;
/** Fewest characters the secret ever had to have: a shorter value is refused even on an existing database. */
export const SECRET_MIN_CHARS = 32;
const MIN_DISTINCT_BYTES = 16;
const MIN_ENTROPY_BITS_PER_BYTE = 3.5;

/** How to make a good value, for error and log messages. */
export const SECRET_ADVICE = 'use at least 32 random bytes as hex or base64, e.g. the output of `openssl rand -hex 32`';

/** The verdict on a secret: its decoded bytes, or why it is weak (never quoting it). */
export type SecretStrength =
  | { strong: true; encoding: 'hex' | 'base64'; bytes: number }
  | { strong: false; reason: string };

/** Applies the rules above to a secret as written (surrounding whitespace ignored). */
export function assessSecret(value: string): SecretStrength {
  const decoded = decodeSecret(value.trim());
  if (decoded === undefined) return { strong: false, reason: 'it is not hex or base64' };
  const { encoding, bytes } = decoded;
  if (bytes.length < SECRET_MIN_BYTES)
    return {
      strong: false,
      reason: `it decodes (as ${encoding}) to ${bytes.length} bytes, fewer than ${SECRET_MIN_BYTES}`,
    };
  const weakness = randomnessFlaw(bytes);
  return weakness === undefined ? { strong: true, encoding, bytes: bytes.length } : { strong: false, reason: weakness };
}

/** Hex when the value is only hex digits of even length, else strict base64 or base64url. */
function decodeSecret(value: string): { encoding: 'hex' | 'base64'; bytes: Buffer } | undefined {
  if (value === '') return undefined;
  if (/^[0-9a-fA-F]+$/.test(value) && value.length % 2 === 0)
    return { encoding: 'hex', bytes: Buffer.from(value, 'hex') };
  const body = value.replace(/={1,2}$/, '');
  if (!/^[A-Za-z0-9+/]+$/.test(body) && !/^[A-Za-z0-9_-]+$/.test(body)) return undefined;
  if (body.length % 4 === 1) return undefined;
  if (body.length !== value.length && value.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(body, 'base64');
  const canonical = body.replace(/\+/g, '-').replace(/\//g, '_');
  if (bytes.toString('base64url') !== canonical) return undefined;
  return { encoding: 'base64', bytes };
}

/** Why the bytes do not look random, or undefined. */
function randomnessFlaw(bytes: Buffer): string | undefined {
  const period = smallestPeriod(bytes);
  if (period <= bytes.length / 2) return `it repeats a block of ${period} byte${period === 1 ? '' : 's'}`;
  const counts = new Map<number, number>();
  for (const b of bytes) counts.set(b, (counts.get(b) ?? 0) + 1);
  if (counts.size < MIN_DISTINCT_BYTES)
    return `it has only ${counts.size} distinct byte values (at least ${MIN_DISTINCT_BYTES})`;
  let entropy = 0;
  for (const n of counts.values()) entropy -= (n / bytes.length) * Math.log2(n / bytes.length);
  if (entropy < MIN_ENTROPY_BITS_PER_BYTE)
    return `its bytes have ${entropy.toFixed(2)} bits of entropy each (at least ${MIN_ENTROPY_BITS_PER_BYTE})`;
  if (bytes.every((b) => b >= 0x20 && b <= 0x7e)) return 'it decodes to printable text, not random bytes';
  return undefined;
}
