import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError } from './config-error.js';
import { assessSecret, SECRET_ADVICE, SECRET_MIN_CHARS } from './secret-strength.js';

/**
 * Where the server secret comes from, as configuration names it (src/runtime/config.ts): the
 * value of `ROTOR_SECRET`, or the file `<data dir>/secret.key`, which start-up creates when it
 * does not exist. Configuration only parses; the file is created and read here, by the commands
 * that key tokens with it (`rotor serve`, `rotor bootstrap`, `rotor recover-admin`), never by `rotor migrate`.
 */
export type SecretSetting = { from: 'env'; value: string } | { from: 'file'; path: string };

/** A secret that fails the strength rules: which variable or file, and why (never the value). */
export interface WeakSecret {
  /** `ROTOR_SECRET`, or the path of secret.key with a note that ROTOR_SECRET is unset. */
  name: string;
  reason: string;
}

/** The server secret, ready to key digests and seals. */
export interface ServerSecret {
  /** Key bytes: the UTF-8 bytes of the value as written (see `loadServerSecret`). */
  bytes: Uint8Array;
  /** Where it came from (logged; the value never is). */
  source: 'env' | 'file';
  /**
   * Set when the secret fails the strength rules (src/runtime/secret-strength.ts) but met the old
   * ones: start-up refuses it on a database without tokens and warns on one with tokens
   * (src/runtime/weak-secret-gate.ts).
   */
  weak: WeakSecret | undefined;
}

/** Key bytes of a secret as written (see `loadServerSecret`): also those of each `ROTOR_SECRET_PREVIOUS` entry. */
export function secretBytes(value: string): Uint8Array {
  return new TextEncoder().encode(value);
}

/** Checks the value of `ROTOR_SECRET` as configuration parses it: too short is never accepted. */
export function requireSecretLength(value: string, name: string, advice = SECRET_ADVICE): void {
  if (value.length < SECRET_MIN_CHARS) throw new ConfigError(`${name} is too short; ${advice}`);
}

/**
 * Reads the server secret: `ROTOR_SECRET`, else `<data dir>/secret.key`, generated once (32
 * random bytes as base64url, mode 0600, its directory 0700) when it does not exist. Both must
 * pass the strength rules; a value that fails them but has the 32 characters the rules asked for
 * before comes back as `weak`, for start-up to decide on once the database is open.
 *
 * The key bytes are the UTF-8 bytes of the value as written, as they always were (not the bytes
 * the hex or base64 decodes to): changing that would break every token and sealed signing key of
 * every existing database, and the text encodes the same random bytes, so it keys the HMACs just
 * as well.
 */
export function loadServerSecret(setting: SecretSetting): ServerSecret {
  if (setting.from === 'env') {
    requireSecretLength(setting.value, 'ROTOR_SECRET');
    return {
      bytes: new TextEncoder().encode(setting.value),
      source: 'env',
      weak: weakness(setting.value, 'ROTOR_SECRET'),
    };
  }
  const file = setting.path;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  try {
    writeFileSync(file, `${generateSecret()}\n`, { flag: 'wx', mode: 0o600 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new ConfigError(`cannot create ${file}: ${(e as Error).message}`);
  }
  chmodSync(file, 0o600);
  const text = readFileSync(file, 'utf8').trim();
  const name = `${file} (the server secret, read when ROTOR_SECRET is unset)`;
  requireSecretLength(text, name, `delete it to generate a new one, or ${SECRET_ADVICE}`);
  return { bytes: new TextEncoder().encode(text), source: 'file', weak: weakness(text, name) };
}

/** 32 random bytes as base64url (the format secret.key always had), drawn again in the unlikely case they fail the rules. */
function generateSecret(): string {
  for (;;) {
    const value = randomBytes(32).toString('base64url');
    if (assessSecret(value).strong) return value;
  }
}

function weakness(value: string, name: string): WeakSecret | undefined {
  const verdict = assessSecret(value);
  return verdict.strong ? undefined : { name, reason: verdict.reason };
}

/**
 * The server secret if one is already there, for commands that key nothing but should not touch
 * someone else's database (`rotor migrate`): `ROTOR_SECRET` when set, else `<data dir>/secret.key`
 * when the file exists. Creates nothing; undefined when there is no secret to compare.
 */
export function existingServerSecret(
  env: Record<string, string | undefined>,
  dataDir: string,
): { bytes: Uint8Array; setting: SecretSetting } | undefined {
  const value = env.ROTOR_SECRET;
  if (value !== undefined && value !== '') {
    return { bytes: new TextEncoder().encode(value), setting: { from: 'env', value } };
  }
  const path = join(dataDir, 'secret.key');
  if (!existsSync(path)) return undefined;
  return { bytes: new TextEncoder().encode(readFileSync(path, 'utf8').trim()), setting: { from: 'file', path } };
}
