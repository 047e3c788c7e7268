import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { RandomSource } from './ports.js';
import { hkdfKey, KEY_LABELS, keyIdOf, legacySubkey } from './server-keys.js';

/**
 * Encryption at rest of JWT signing keys: AES-256-GCM under a key derived from the server secret
 * (`ROTOR_SECRET`), with the key id as additional authenticated data, so a database dump alone
 * reveals no private key and a sealed key cannot be moved to another row. A sealed key names the
 * server key that sealed it (`v2.<key id>.…`); `v1.…` was sealed under the legacy subkey of the
 * raw secret, before key ids (docs/server-key.md).
 */
export interface SigningKeySeal {
  /** Encrypts a private key (serialised JWK) for the row of `kid`, under the current server key. */
  seal(kid: string, plaintext: string, random: RandomSource): string;
  /** Decrypts what `seal` produced for the same `kid` under any configured server key; throws when none made it. */
  open(kid: string, sealed: string): string;
  /** Whether `sealed` was sealed under the current server key (else a start re-seals it). */
  isCurrent(sealed: string): boolean;
}

const VERSION = 'v2';
const LEGACY_VERSION = 'v1';
const IV_BYTES = 12;

function aad(kid: string): Buffer {
  return Buffer.from(`rotor/v1/signing-key/${kid}`);
}

/** Builds the seal from the current server secret and the previous ones (each at least 32 bytes). */
export function createSigningKeySeal(serverSecret: Uint8Array, previous: readonly Uint8Array[] = []): SigningKeySeal {
  for (const s of [serverSecret, ...previous])
    if (s.length < 32) throw new TypeError('server secret must be at least 32 bytes');
  const currentId = keyIdOf(serverSecret);
  const key = hkdfKey(serverSecret, KEY_LABELS.signingKeySeal);
  const byId = new Map([serverSecret, ...previous].map((s) => [keyIdOf(s), hkdfKey(s, KEY_LABELS.signingKeySeal)]));
  const legacy = [serverSecret, ...previous].map((s) => legacySubkey(s, 'rotor/v1/signing-key-seal'));
  return {
    seal(kid, plaintext, random) {
      const iv = Buffer.from(random(IV_BYTES));
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(kid));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [
        VERSION,
        currentId,
        iv.toString('base64url'),
        body.toString('base64url'),
        cipher.getAuthTag().toString('base64url'),
      ].join('.');
    },
    open(kid, sealed) {
      const parts = sealed.split('.');
      let keys: Buffer[];
      let fields: string[];
      if (parts[0] === VERSION && parts.length === 5) {
        const k = byId.get(parts[1]!);
        keys = k === undefined ? [] : [k];
        fields = parts.slice(2);
      } else if (parts[0] === LEGACY_VERSION && parts.length === 4) {
        keys = legacy;
        fields = parts.slice(1);
      } else {
        throw new Error(`signing key ${kid} is not sealed in a known format`);
      }
      const [iv, body, tag] = fields as [string, string, string];
      for (const k of keys) {
        const decipher = createDecipheriv('aes-256-gcm', k, Buffer.from(iv, 'base64url'));
        decipher.setAAD(aad(kid));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        try {
          return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
        } catch {
          // not this key; try the next
        }
      }
      throw new Error(
        `signing key ${kid} cannot be decrypted: it was sealed under a server key that is neither ROTOR_SECRET nor in ROTOR_SECRET_PREVIOUS`,
      );
    },
    isCurrent(sealed) {
      return sealed.startsWith(`${VERSION}.${currentId}.`);
    },
  };
}

/** The key id a sealed signing key names, or undefined for a legacy (`v1`) one. */
export function sealKeyId(sealed: string): string | undefined {
  const parts = sealed.split('.');
  return parts[0] === VERSION && parts.length === 5 ? parts[1] : undefined;
}
