import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SigningKeySeal } from '../domain/signing-key-seal.js';
import { ConfigError } from './config-error.js';
import type { SecretSetting } from './server-secret.js';

/** The label the fingerprint is an HMAC of; a new version would be a new label. */
const FINGERPRINT_LABEL = 'rotor server key fingerprint v1';

/**
 * A keyed fingerprint of the server secret: `v1:` and the hex of HMAC-SHA-256 under the secret's
 * key bytes of a fixed label. It identifies the secret without revealing it (an HMAC cannot be
 * inverted, and testing guesses against it is no easier than against any token digest).
 */
export function serverKeyFingerprint(secret: Uint8Array): string {
  return `v1:${createHmac('sha256', secret).update(FINGERPRINT_LABEL).digest('hex')}`;
}

/** What the check needs of the database (src/store/server-key-repository.ts). */
export interface ServerKeyStore {
  fingerprint(): Promise<string | undefined>;
  adopt(fingerprint: string, now: number): Promise<string>;
  someSealedSigningKey(): Promise<{ kid: string; sealed: string } | undefined>;
}

/** What the check found: a new database's first key, an older database adopting it, or the same key. */
export type ServerKeyVerdict = 'recorded' | 'matched';

/**
 * Refuses a server secret other than the one the database was created with, before anything is
 * keyed by it: a replica with another `ROTOR_SECRET` (or another secret.key) would recognise no
 * token and could not unseal the JWT signing keys. A database without a fingerprint (new, or made
 * before it existed) takes this secret's, but only after the secret has unsealed a stored signing
 * key, when there is one: tokens alone cannot tell (their digests need a token's secret).
 */
export async function checkServerKey(
  store: ServerKeyStore,
  secret: Uint8Array,
  setting: SecretSetting,
  seal: SigningKeySeal,
  now: number,
): Promise<ServerKeyVerdict> {
  const mine = serverKeyFingerprint(secret);
  let stored = await store.fingerprint();
  if (stored === undefined) {
    const sealed = await store.someSealedSigningKey();
    if (sealed !== undefined) {
      try {
        seal.open(sealed.kid, sealed.sealed);
      } catch {
        throw mismatch(setting, `it cannot unseal the JWT signing key ${sealed.kid} stored in the database`);
      }
    }
    stored = await store.adopt(mine, now);
    if (sameFingerprint(stored, mine)) return 'recorded';
  }
  if (!sameFingerprint(stored, mine)) throw mismatch(setting, 'fingerprint mismatch');
  return 'matched';
}

/**
 * For commands that key nothing (`rotor migrate`): refuses `secret` only when the database has
 * recorded the fingerprint of another one; records nothing itself.
 */
export async function requireRecordedServerKey(
  store: Pick<ServerKeyStore, 'fingerprint'>,
  secret: Uint8Array,
  setting: SecretSetting,
): Promise<void> {
  const stored = await store.fingerprint();
  if (stored !== undefined && !sameFingerprint(stored, serverKeyFingerprint(secret))) {
    throw mismatch(setting, 'fingerprint mismatch');
  }
}

function sameFingerprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The refusal: names where the secret came from and what to do, never the value. */
function mismatch(setting: SecretSetting, why: string): ConfigError {
  const name =
    setting.from === 'env'
      ? 'ROTOR_SECRET'
      : `the server secret in ${setting.path} (read because ROTOR_SECRET is unset)`;
  return new ConfigError(
    `${name} differs from the key this database was created with (${why}); use the same value on every replica, or point ROTOR_DATABASE_URL (or ROTOR_DATA_DIR) at the database made with this key. Every token and JWT signing key in a database is keyed by its server secret; another secret recognises none of them`,
  );
}
