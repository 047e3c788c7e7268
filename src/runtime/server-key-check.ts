import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../app/logger-port.js';
import type { RandomSource } from '../domain/ports.js';
import { keyIdOf, type ServerSecrets } from '../domain/server-keys.js';
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

/**
 * How many stored digests and sealed signing keys one server key made (`keyId` undefined: legacy
 * rows), counting as depending on it only what a client still relies on; the rest is `ended`.
 */
export interface KeyUsage {
  keyId: string | undefined;
  /** Digests of usable tokens: unrevoked and unexpired, or rotated and inside their overlap window. */
  tokens: number;
  /** Idempotency-key digests of tokens rotated inside the retry window (ROTOR_RETRY_WINDOW_SECONDS). */
  retryKeys: number;
  /** Sealed private JWT signing keys. */
  signingKeys: number;
  /**
   * Digests of ended tokens (expired, revoked, rotated past their overlap) and idempotency digests
   * past the retry window: under a key no longer configured they only lose reuse detection (a
   * rotated token presented again then reads as unknown instead of revoking its family).
   */
  ended: number;
}

/** What the check needs of the database (src/store/server-key-repository.ts). */
export interface ServerKeyStore {
  fingerprint(): Promise<string | undefined>;
  legacyFingerprint(): Promise<string | undefined>;
  adopt(fingerprint: string, now: number): Promise<string>;
  record(fingerprint: string): Promise<void>;
  someSealedSigningKey(): Promise<{ kid: string; sealed: string } | undefined>;
  sealedSigningKeys(): Promise<{ kid: string; sealed: string }[]>;
  replaceSealed(kid: string, from: string, to: string): Promise<boolean>;
  keyUsage(now: number, retryWindowMs: number): Promise<KeyUsage[]>;
}

/** One line of `rotor key-status`: a server key and what still depends on it. */
export interface KeyStatus extends KeyUsage {
  /** The key id, or `legacy` for rows made before key ids (from the raw secret). */
  key: string;
  /** `current`, `previous` (in ROTOR_SECRET_PREVIOUS, or the legacy rows of a configured key), or `unknown`. */
  role: 'current' | 'previous' | 'unknown';
  /** For legacy rows: the key id of the configured secret that made them, when one did. */
  legacyOf?: string;
}

/** The configured keys as the check compares them: key id and fingerprint, current first. */
function configured(secrets: ServerSecrets): { id: string; fingerprint: string }[] {
  return [secrets.current, ...secrets.previous].map((s) => ({ id: keyIdOf(s), fingerprint: serverKeyFingerprint(s) }));
}

/**
 * Every server key rows depend on, with its role for `secrets`: the current key and each previous
 * key (listed even when nothing depends on them), then keys no longer configured.
 */
export function keyStatus(
  usage: readonly KeyUsage[],
  secrets: ServerSecrets,
  legacyFingerprint: string | undefined,
): KeyStatus[] {
  const keys = configured(secrets);
  const empty = { tokens: 0, retryKeys: 0, signingKeys: 0, ended: 0 };
  const out: KeyStatus[] = keys.map((k, i) => ({
    key: k.id,
    keyId: k.id,
    role: i === 0 ? 'current' : 'previous',
    ...empty,
    ...pick(usage.find((u) => u.keyId === k.id)),
  }));
  for (const u of usage) {
    if (u.keyId !== undefined && keys.some((k) => k.id === u.keyId)) continue;
    if (rowsOf(u) + u.ended === 0) continue;
    if (u.keyId !== undefined) {
      out.push({ key: u.keyId, ...u, role: 'unknown' });
      continue;
    }
    const maker =
      legacyFingerprint === undefined ? undefined : keys.find((k) => sameFingerprint(k.fingerprint, legacyFingerprint));
    out.push({
      key: 'legacy',
      ...u,
      role: maker === undefined ? 'unknown' : 'previous',
      ...(maker === undefined ? {} : { legacyOf: maker.id }),
    });
  }
  return out;
}

function pick(u: KeyUsage | undefined) {
  return u === undefined
    ? {}
    : { tokens: u.tokens, retryKeys: u.retryKeys, signingKeys: u.signingKeys, ended: u.ended };
}

/** Rows that depend on `s` (its ended rows apart). */
export function rowsOf(s: KeyUsage): number {
  return s.tokens + s.retryKeys + s.signingKeys;
}

/** What the check found and did. */
export interface ServerKeyCheck {
  /** `recorded`: a new database (or one older than fingerprints) took the current key's; `rotated`: the recorded key was a previous one. */
  verdict: 'recorded' | 'matched' | 'rotated';
  /** Rows that depend on keys not configured (only when ROTOR_SECRET_DROP_UNKNOWN let start-up go on). */
  unknownRows: number;
  /** Sealed signing keys moved to the current key. */
  resealed: number;
}

/** What the check is told besides the database. */
export interface ServerKeyCheckOptions {
  secrets: ServerSecrets;
  /** Where ROTOR_SECRET came from (for messages; never the value). */
  setting: SecretSetting;
  seal: SigningKeySeal;
  now: number;
  random: RandomSource;
  /** ROTOR_SECRET_DROP_UNKNOWN: start even when rows depend on keys that are not configured. */
  dropUnknown: boolean;
  /** ROTOR_RETRY_WINDOW_SECONDS in ms: how long an idempotency digest is still relied on. */
  retryWindowMs: number;
  log: Logger;
}

/**
 * The start-up check of the server keys (docs/server-key.md), before anything is keyed by them:
 *
 * - The database records the fingerprint of the current key it was last started with. A replica
 *   must have it among its keys (`ROTOR_SECRET` or `ROTOR_SECRET_PREVIOUS`), so a replica with
 *   another secret stops at once even on a database without tokens; once it has, the record
 *   follows this replica's current key. A database without a fingerprint (new, or made before it
 *   existed) takes the current key's, but only after a configured key has unsealed a stored
 *   signing key, when there is one: tokens alone cannot tell (their digests need a token's secret).
 * - No row may depend on a key that is not configured: every digest and sealed key names its key
 *   (legacy rows: the key of `legacy_fingerprint`).
 *
 * Either refusal names the count and is lifted by ROTOR_SECRET_DROP_UNKNOWN=true. Then every sealed
 * signing key not sealed under the current key is re-sealed under it.
 */
export async function checkServerKey(store: ServerKeyStore, o: ServerKeyCheckOptions): Promise<ServerKeyCheck> {
  const keys = configured(o.secrets);
  const mine = keys[0]!.fingerprint;
  let verdict: ServerKeyCheck['verdict'] = 'matched';
  let stored = await store.fingerprint();
  if (stored === undefined) {
    const sealed = await store.someSealedSigningKey();
    if (sealed !== undefined) {
      try {
        o.seal.open(sealed.kid, sealed.sealed);
      } catch {
        if (!o.dropUnknown)
          throw mismatch(o.setting, `it cannot unseal the JWT signing key ${sealed.kid} stored in the database`);
      }
    }
    stored = await store.adopt(mine, o.now);
    if (sameFingerprint(stored, mine)) verdict = 'recorded';
  }
  const known = keys.some((k) => sameFingerprint(k.fingerprint, stored));
  const status = keyStatus(await store.keyUsage(o.now, o.retryWindowMs), o.secrets, await store.legacyFingerprint());
  const unknown = status.filter((s) => s.role === 'unknown' && rowsOf(s) > 0);
  const unknownRows = unknown.reduce((n, s) => n + rowsOf(s), 0);
  const unknownEnded = status.filter((s) => s.role === 'unknown').reduce((n, s) => n + s.ended, 0);
  if (unknownEnded > 0) {
    o.log.warn('ended tokens depend on server keys that are not configured; presenting them again reads as unknown', {
      ended_rows: unknownEnded,
    });
  }
  if ((!known || unknownRows > 0) && !o.dropUnknown) throw refusal(o.setting, known, unknown, unknownRows);
  if (unknownRows > 0 || !known) {
    o.log.warn('ROTOR_SECRET_DROP_UNKNOWN=true: starting although rows depend on server keys that are not configured', {
      unknown_rows: unknownRows,
      unknown_keys: unknown.map((s) => s.key),
      fingerprint_known: known,
    });
  }
  if (!sameFingerprint(stored, mine)) {
    await store.record(mine);
    if (verdict === 'matched') verdict = 'rotated';
  }
  return { verdict, unknownRows, resealed: await reseal(store, o) };
}

/** Re-seals every sealed signing key that is not under the current key (those it can open). */
async function reseal(store: ServerKeyStore, o: ServerKeyCheckOptions): Promise<number> {
  let resealed = 0;
  for (const { kid, sealed } of await store.sealedSigningKeys()) {
    if (o.seal.isCurrent(sealed)) continue;
    let plain: string;
    try {
      plain = o.seal.open(kid, sealed);
    } catch {
      continue; // under a key that is not configured: counted (and allowed) above
    }
    if (await store.replaceSealed(kid, sealed, o.seal.seal(kid, plain, o.random))) resealed++;
  }
  return resealed;
}

/**
 * For commands that key nothing (`rotor migrate`): refuses the configured secrets only when the
 * database has recorded the fingerprint of a key that is none of them; records nothing itself.
 */
export async function requireRecordedServerKey(
  store: Pick<ServerKeyStore, 'fingerprint'>,
  secrets: ServerSecrets,
  setting: SecretSetting,
): Promise<void> {
  const stored = await store.fingerprint();
  if (stored !== undefined && !configured(secrets).some((k) => sameFingerprint(stored, k.fingerprint))) {
    throw mismatch(setting, 'fingerprint mismatch');
  }
}

function sameFingerprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function secretName(setting: SecretSetting): string {
  return setting.from === 'env'
    ? 'ROTOR_SECRET'
    : `the server secret in ${setting.path} (read because ROTOR_SECRET is unset)`;
}

/** The refusal: names where the secret came from and what to do, never the value. */
function mismatch(setting: SecretSetting, why: string): ConfigError {
  return new ConfigError(
    `${secretName(setting)} differs from the server key of this database (${why}), and ROTOR_SECRET_PREVIOUS does not name it; use the same value on every replica (to change it, docs/server-key.md), or point ROTOR_DATABASE_URL (or ROTOR_DATA_DIR) at the database made with this key. Every token and JWT signing key in a database is keyed by its server secret; another secret recognises none of them`,
  );
}

/** The refusal of rows under keys that are not configured: how many, under which key ids. */
function refusal(setting: SecretSetting, known: boolean, unknown: KeyStatus[], count: number): ConfigError {
  if (count === 0) return mismatch(setting, 'fingerprint mismatch');
  const which = unknown
    .map(
      (s) =>
        `${s.key === 'legacy' ? 'legacy rows' : `key ${s.key}`}: ${s.tokens} tokens, ${s.retryKeys} idempotency digests, ${s.signingKeys} signing keys`,
    )
    .join('; ');
  const head = known
    ? ''
    : `${secretName(setting)} differs from the server key of this database (fingerprint mismatch); `;
  return new ConfigError(
    `${head}${count} rows depend on server keys that are not configured (${which}); put the secret that made them in ROTOR_SECRET_PREVIOUS, or set ROTOR_SECRET_DROP_UNKNOWN=true to start anyway, leaving those tokens unknown and those signing keys unusable (docs/server-key.md)`,
  );
}
