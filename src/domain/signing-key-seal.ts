import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { RandomSource } from './ports.js';
import { subkey } from './token-keys.js';

/**
 * Encryption at rest of JWT signing keys: AES-256-GCM under a subkey of the server secret
 * (`ROTOR_SECRET`), with the key id as additional authenticated data, so a database dump alone
 * reveals no private key and a sealed key cannot be moved to another row.
 */
export interface SigningKeySeal {
  /** Encrypts a private key (serialised JWK) for the row of `kid`. */
  seal(kid: string, plaintext: string, random: RandomSource): string;
  /** Decrypts what `seal` produced for the same `kid`; throws when the secret or the row differ. */
  open(kid: string, sealed: string): string;
}

const VERSION = 'v1';
const IV_BYTES = 12;

function aad(kid: string): Buffer {
  return Buffer.from(`rotor/v1/signing-key/${kid}`);
}

/** Builds the seal from the server secret (at least 32 bytes). */
export function createSigningKeySeal(serverSecret: Uint8Array): SigningKeySeal {
  if (serverSecret.length < 32) throw new TypeError('server secret must be at least 32 bytes');
  const key = subkey(serverSecret, 'rotor/v1/signing-key-seal');
  return {
    seal(kid, plaintext, random) {
      const iv = Buffer.from(random(IV_BYTES));
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(aad(kid));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [
        VERSION,
        iv.toString('base64url'),
        body.toString('base64url'),
        cipher.getAuthTag().toString('base64url'),
      ].join('.');
    },
    open(kid, sealed) {
      const [version, iv, body, tag] = sealed.split('.');
      if (version !== VERSION || iv === undefined || body === undefined || tag === undefined) {
        throw new Error(`signing key ${kid} is not sealed in a known format`);
      }
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAAD(aad(kid));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      try {
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
      } catch {
        throw new Error(
          `signing key ${kid} cannot be decrypted: the server secret differs from the one that sealed it`,
        );
      }
    },
  };
}
