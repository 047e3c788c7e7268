import { createHmac, hkdfSync } from 'node:crypto';

/**
 * Keys derived from a server secret (`ROTOR_SECRET`, or one of `ROTOR_SECRET_PREVIOUS`): HKDF-SHA-256
 * (RFC 5869) with an empty salt and one `info` label per purpose, so a key derived for one purpose
 * reveals neither another purpose's key nor the secret (docs/server-key.md).
 *
 * Every digest and sealed key Rotor stores names the server key that made it by its key id (below):
 * a short HKDF output, never the key, from which nothing about the key can be learnt.
 */

/** Length of a key id: 8 base64url characters (48 bits), prefixed to every digest made under the key. */
export const KEY_ID_CHARS = 8;

/** The `info` labels of Rotor's own derived keys; `deriveServerKey` refuses them for other uses. */
export const KEY_LABELS = {
  keyId: 'rotor key id',
  secretDigest: 'rotor token secret digest',
  idempotencyDigest: 'rotor idempotency key digest',
  successorSecret: 'rotor successor secret',
  signingKeySeal: 'rotor signing key seal',
} as const;

const RESERVED = new Set<string>(Object.values(KEY_LABELS));

/** `length` bytes of HKDF-SHA-256 from `secret` for the purpose named by `label`. */
export function hkdfKey(secret: Uint8Array, label: string, length = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, new Uint8Array(0), label, length));
}

/**
 * A key for a purpose outside this module (for example `rotor dpop nonce`), derived from the
 * server secret `secret` like Rotor's own: distinct labels give independent keys. Rotor's own
 * labels are refused, so no caller can obtain a digest or sealing key.
 */
export function deriveServerKey(secret: Uint8Array, label: string, length = 32): Buffer {
  if (label === '' || RESERVED.has(label)) throw new TypeError(`"${label}" is not a usable key label`);
  return hkdfKey(secret, label, length);
}

/** The key id of a server secret: the first 48 bits of its HKDF output for `rotor key id`, as base64url. */
export function keyIdOf(secret: Uint8Array): string {
  return hkdfKey(secret, KEY_LABELS.keyId, 6).toString('base64url');
}

/**
 * A subkey of the raw secret, as Rotor derived them before key ids existed ("legacy"): HMAC-SHA-256
 * of the label under the secret. Only read to recognise rows made that way, never to make new ones.
 */
export function legacySubkey(secret: Uint8Array, label: string): Buffer {
  return createHmac('sha256', secret).update(label).digest();
}

/** The key id a stored digest names, or undefined for a legacy digest (which names none). */
export function digestKeyId(digest: string): string | undefined {
  return digest.length > KEY_ID_CHARS && digest.charCodeAt(KEY_ID_CHARS) === 0x2e /* . */
    ? digest.slice(0, KEY_ID_CHARS)
    : undefined;
}

/** The server keys a process is configured with: the current one first, then the previous ones. */
export interface ServerSecrets {
  current: Uint8Array;
  previous: readonly Uint8Array[];
}
