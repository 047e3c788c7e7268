import { BASE62, decodeBase62, encodeBase62Fixed, isBase62, uniformBase62 } from './base62.js';
import { crc32 } from './crc32.js';
import { RotorError } from './errors.js';
import type { RandomSource } from './ports.js';
import { SECRET_PREFIX, TOKEN_KINDS, type TokenKind } from './token-kind.js';

/** 43 base62 characters carry log2(62^43) = 256.03 bits. */
export const SECRET_RANDOM_CHARS = 43;
/** CRC-32 fits in 6 base62 digits (62^6 > 2^32). */
export const SECRET_CHECKSUM_CHARS = 6;
/** Longest secret we ever accept as input; anything longer is rejected before any work. */
export const MAX_SECRET_LENGTH = 64;
/** How many characters of a secret may be shown (the prefix plus four random characters). */
export const DISPLAY_RANDOM_CHARS = 4;

/** A parsed, checksum-verified token secret. Holding one says nothing about it being known. */
export interface ParsedSecret {
  kind: TokenKind;
  secret: string;
}

function checksum(body: string): string {
  return encodeBase62Fixed(crc32(body), SECRET_CHECKSUM_CHARS);
}

/**
 * Builds a secret `<prefix><43 random base62><6 base62 CRC-32>` from a byte source. Fresh secrets
 * use a CSPRNG; the idempotent-retry path passes a deterministic HMAC stream instead.
 */
export function formatSecret(kind: TokenKind, bytes: RandomSource): string {
  const body = SECRET_PREFIX[kind] + uniformBase62(SECRET_RANDOM_CHARS, bytes);
  return body + checksum(body);
}

/**
 * Parses and checksums a presented secret without touching storage, so typos and garbage are
 * refused cheaply. Throws `invalid_token`; the message never echoes the input.
 */
export function parseSecret(input: string): ParsedSecret {
  if (typeof input !== 'string' || input.length === 0) {
    throw new RotorError('invalid_token', 'token is empty');
  }
  if (input.length > MAX_SECRET_LENGTH) {
    throw new RotorError('invalid_token', 'token is malformed');
  }
  for (const kind of TOKEN_KINDS) {
    const prefix = SECRET_PREFIX[kind];
    if (!input.startsWith(prefix)) continue;
    // Checked in place, without slicing: this runs twice per authenticated call (bearer and target).
    const bodyEnd = input.length - SECRET_CHECKSUM_CHARS;
    if (
      input.length !== prefix.length + SECRET_RANDOM_CHARS + SECRET_CHECKSUM_CHARS ||
      !isBase62(input, prefix.length, bodyEnd)
    ) {
      throw new RotorError('invalid_token', 'token is malformed');
    }
    // encodeBase62Fixed is a bijection on [0, 62^6), so comparing the decoded number with the
    // CRC is the same test as comparing checksum(body) with the last six characters.
    const presented = decodeBase62(input, bodyEnd, input.length);
    if (presented < 0) throw new RotorError('invalid_token', 'token is malformed');
    if (crc32(input, bodyEnd) !== presented) {
      throw new RotorError('invalid_token', 'token checksum does not match');
    }
    return { kind, secret: input };
  }
  throw new RotorError('invalid_token', 'token is malformed');
}

/** The part of a secret that may be displayed and logged: prefix plus a few characters. */
export function displayPrefix(secret: string): string {
  const kind = TOKEN_KINDS.find((k) => secret.startsWith(SECRET_PREFIX[k]));
  const prefixLength = kind ? SECRET_PREFIX[kind].length : 0;
  return secret.slice(0, prefixLength + DISPLAY_RANDOM_CHARS);
}

export { BASE62 };
