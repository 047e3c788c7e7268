import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { RandomSource } from './ports.js';

/**
 * Keyed functions over secrets, all derived from the one server secret (`ROTOR_SECRET`) with
 * domain separation, so a database dump alone reveals nothing usable
 * (docs/design.md, "Rules that hold everywhere").
 */
export interface TokenKeys {
  /** HMAC-SHA-256 digest of a secret, the only form in which a secret is stored. */
  secretDigest(secret: string): string;
  /** Keyed digest of an idempotency key (stored on the rotated predecessor). */
  idempotencyDigest(key: string): string;
  /**
   * A deterministic byte stream for the successor secret of an idempotent rotation: HMAC of the
   * server key over (seed, key). The seed is the predecessor's secret when the holder rotates,
   * or its id when an admin rotates by id. A retry re-derives the same successor, so no
   * plaintext is ever stored.
   */
  successorBytes(seed: string, idempotencyKey: string): RandomSource;
}

/** A subkey of the server secret for one purpose, named by `label` (domain separation). */
export function subkey(secret: Uint8Array, label: string): Buffer {
  return createHmac('sha256', secret).update(label).digest();
}

/** Builds the keyed functions from the server secret (at least 32 bytes). */
export function createTokenKeys(serverSecret: Uint8Array): TokenKeys {
  if (serverSecret.length < 32) throw new TypeError('server secret must be at least 32 bytes');
  // KeyObjects built once: createHmac with raw key bytes imports the key again on every call,
  // and secretDigest runs twice per authenticated introspection (bench/README.md).
  const digestKey: KeyObject = createSecretKey(subkey(serverSecret, 'rotor/v1/secret-digest'));
  const idempotencyKey: KeyObject = createSecretKey(subkey(serverSecret, 'rotor/v1/idempotency-digest'));
  const successorKey: KeyObject = createSecretKey(subkey(serverSecret, 'rotor/v1/successor-secret'));
  return {
    secretDigest: (secret) => createHmac('sha256', digestKey).update(secret).digest('base64url'),
    idempotencyDigest: (key) => createHmac('sha256', idempotencyKey).update(key).digest('base64url'),
    successorBytes(seed, key) {
      let counter = 0;
      return (length) => {
        const chunks: Buffer[] = [];
        let have = 0;
        while (have < length) {
          const block = createHmac('sha256', successorKey).update(`${seed}\0${key}\0${counter++}`).digest();
          chunks.push(block);
          have += block.length;
        }
        return new Uint8Array(Buffer.concat(chunks).subarray(0, length));
      };
    },
  };
}

/** Constant-time equality of two digests (strings of equal encoding). */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
