import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { RandomSource } from './ports.js';
import { RecentMap } from './recent-map.js';
import { deriveServerKey, digestKeyId, hkdfKey, KEY_LABELS, keyIdOf, legacySubkey } from './server-keys.js';
import { parseSecret } from './token-secret.js';

/**
 * The keyed functions over secrets of one server key, derived from it with domain separation, so
 * a database dump alone reveals nothing usable (docs/design.md, "Rules that hold everywhere";
 * docs/server-key.md).
 */
export interface DigestKeys {
  /** The key id every digest made here starts with; undefined for a legacy derivation (no prefix). */
  readonly id: string | undefined;
  /** Keyed digest of a secret, the only form in which a secret is stored: `<key id>.<HMAC-SHA-256>`. */
  secretDigest(secret: string): string;
  /**
   * The digest of a secret a caller presented, parsed and checksummed first (parseSecret: an
   * `invalid_token` error for garbage, before any HMAC). A string presented within the last second
   * passed both then, and its digest is remembered (recentDigests): a client sends the same bearer,
   * and a resource server introspects the same token, call after call.
   */
  presentedDigest(input: string): string;
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

/**
 * The keyed functions of the configured server keys: the current key's (what every new digest is
 * made with), and the older ones a stored digest may have been made with.
 */
export interface TokenKeys extends DigestKeys {
  readonly id: string;
  /**
   * The previous keys (`ROTOR_SECRET_PREVIOUS`, in order), then the legacy derivations of every
   * configured secret (rows made before key ids existed): what a lookup tries after the current key.
   */
  readonly older: readonly DigestKeys[];
  /** The configured keys that may have made `digest`: the one its key id names, or every legacy derivation. */
  keysOf(digest: string): DigestKeys[];
  /**
   * A key for another purpose, derived from the current server secret through HKDF with `label`
   * (src/domain/server-keys.ts, `deriveServerKey`): for example `rotor dpop nonce`.
   */
  deriveServerKey(label: string, length?: number): Buffer;
  /** The same key derived from every configured secret, current first: to accept what older keys made. */
  deriveServerKeys(label: string, length?: number): Buffer[];
}

/** Builds the keyed functions from the current server secret and the previous ones (each at least 32 bytes). */
export function createTokenKeys(serverSecret: Uint8Array, previous: readonly Uint8Array[] = []): TokenKeys {
  for (const s of [serverSecret, ...previous])
    if (s.length < 32) throw new TypeError('server secret must be at least 32 bytes');
  const current = derivedKeys(serverSecret);
  const previousKeys = previous.map(derivedKeys);
  const legacy = [serverSecret, ...previous].map(legacyKeys);
  const byId = new Map<string, DigestKeys>([current, ...previousKeys].map((k) => [k.id!, k]));
  return {
    ...current,
    id: current.id!,
    older: [...previousKeys, ...legacy],
    deriveServerKey: (label, length) => deriveServerKey(serverSecret, label, length),
    deriveServerKeys: (label, length) => [serverSecret, ...previous].map((s) => deriveServerKey(s, label, length)),
    keysOf(digest) {
      const id = digestKeyId(digest);
      if (id === undefined) return legacy;
      const k = byId.get(id);
      return k === undefined ? [] : [k];
    },
  };
}

/** A key's functions under HKDF-derived subkeys; every digest starts with the key id. */
function derivedKeys(secret: Uint8Array): DigestKeys {
  const id = keyIdOf(secret);
  return keyedFunctions(
    id,
    hkdfKey(secret, KEY_LABELS.secretDigest),
    hkdfKey(secret, KEY_LABELS.idempotencyDigest),
    hkdfKey(secret, KEY_LABELS.successorSecret),
  );
}

/** The functions as Rotor made them before key ids: HMAC subkeys of the raw secret, digests without a prefix. */
function legacyKeys(secret: Uint8Array): DigestKeys {
  return keyedFunctions(
    undefined,
    legacySubkey(secret, 'rotor/v1/secret-digest'),
    legacySubkey(secret, 'rotor/v1/idempotency-digest'),
    legacySubkey(secret, 'rotor/v1/successor-secret'),
  );
}

function keyedFunctions(id: string | undefined, digest: Buffer, idempotency: Buffer, successor: Buffer): DigestKeys {
  // KeyObjects built once: createHmac with raw key bytes imports the key again on every call,
  // and secretDigest runs twice per authenticated introspection (bench/README.md).
  const digestKey: KeyObject = createSecretKey(digest);
  const idempotencyKey: KeyObject = createSecretKey(idempotency);
  const successorKey: KeyObject = createSecretKey(successor);
  const prefix = id === undefined ? '' : `${id}.`;
  const recent = recentDigests();
  const hmac = (secret: string) => prefix + createHmac('sha256', digestKey).update(secret).digest('base64url');
  return {
    id,
    secretDigest(secret) {
      return recent.get(secret) ?? hmac(secret);
    },
    presentedDigest(input) {
      const known = recent.get(input);
      if (known !== undefined) return known;
      // Only strings that parsed are remembered: a hit above stands for the parse as well.
      const digest = hmac(parseSecret(input).secret);
      recent.set(input, digest);
      return digest;
    },
    idempotencyDigest: (key) => prefix + createHmac('sha256', idempotencyKey).update(key).digest('base64url'),
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

/**
 * The digests of the secrets presented in the last second, at most 1,024: a client sends the same
 * bearer (and a resource server introspects the same token) call after call, and one HMAC was
 * about a tenth of an introspection's CPU (bench/README.md, "Ninth session"), parsing and
 * checksumming its two secrets about a fiftieth ("Thirteenth session"). Only presentedDigest adds
 * to it, after the secret parsed; secretDigest only reads it. It holds a secret no longer than a
 * second after the request that carried it (the map sweeps itself when idle), and never beyond
 * this process (docs/design.md, "Rules that hold everywhere"). A digest depends only on the key
 * and the secret, so a remembered one is always right.
 */
function recentDigests(): RecentMap<string, string> {
  return new RecentMap({ maxEntries: 1024, ttlMs: 1000 });
}

/** Constant-time equality of two digests (strings of equal encoding). */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
