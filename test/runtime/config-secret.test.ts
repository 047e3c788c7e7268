import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/runtime/config.js';
import { createLogger } from '../../src/runtime/logger.js';
import { loadServerSecret } from '../../src/runtime/server-secret.js';
import { admitWeakSecret } from '../../src/runtime/weak-secret-gate.js';

const freshDir = () => mkdtempSync(join(tmpdir(), 'rotor-secret-'));
const utf8 = (s: string) => new Uint8Array(Buffer.from(s, 'utf8'));

describe('ROTOR_SECRET and secret.key (README: Configuration)', () => {
  it.each([
    ['hex', randomBytes(32).toString('hex')],
    ['base64', randomBytes(32).toString('base64')],
    ['base64url', randomBytes(32).toString('base64url')],
  ])(
    'a strong %s value is accepted, and its key bytes are the UTF-8 of the value as written, as before',
    (_name, value) => {
      const c = loadServerSecret(loadConfig({ ROTOR_DATA_DIR: freshDir(), ROTOR_SECRET: value }).secret);
      expect(c.weak).toBeUndefined();
      expect(c.source).toBe('env');
      expect(c.bytes).toEqual(utf8(value));
    },
  );

  it('a weak value of 32 characters or more (the old rule) is kept for start-up to decide, with the same key bytes', () => {
    const c = loadServerSecret(loadConfig({ ROTOR_DATA_DIR: freshDir(), ROTOR_SECRET: 'a'.repeat(32) }).secret);
    expect(c.weak).toEqual({ name: 'ROTOR_SECRET', reason: 'it decodes (as hex) to 16 bytes, fewer than 32' });
    expect(c.bytes).toEqual(utf8('a'.repeat(32)));
  });

  it('a value shorter than 32 characters is refused outright, naming ROTOR_SECRET and how to make one, never quoting it', () => {
    const value = 'short-but-secret-value';
    const load = () => loadConfig({ ROTOR_DATA_DIR: freshDir(), ROTOR_SECRET: value });
    expect(load).toThrow(
      new ConfigError(
        'ROTOR_SECRET is too short; use at least 32 random bytes as hex or base64, e.g. the output of `openssl rand -hex 32`',
      ),
    );
    expect(load).not.toThrow(value);
  });

  it('without ROTOR_SECRET, configuration only names secret.key; start-up generates it once: 32 random bytes as base64url, mode 0600, strong; later loads read the same bytes', () => {
    const dir = join(freshDir(), 'data');
    const file = join(dir, 'secret.key');
    const config = loadConfig({ ROTOR_DATA_DIR: dir });
    expect(config.secret).toEqual({ from: 'file', path: file });
    expect(existsSync(dir)).toBe(false); // parsing writes nothing
    const first = loadServerSecret(config.secret);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(first).toMatchObject({ source: 'file', weak: undefined });
    expect(first.bytes).toEqual(utf8(text.trim()));
    expect(loadServerSecret(loadConfig({ ROTOR_DATA_DIR: dir }).secret).bytes).toEqual(first.bytes);
  });

  it('secret.key provided by the operator follows the same rules: hex is read as written, a weak one is named by its path, a short one is refused', () => {
    const hexDir = freshDir();
    const hex = randomBytes(32).toString('hex');
    writeFileSync(join(hexDir, 'secret.key'), `${hex}\n`);
    expect(loadServerSecret(loadConfig({ ROTOR_DATA_DIR: hexDir }).secret)).toMatchObject({
      bytes: utf8(hex),
      weak: undefined,
    });

    const weakDir = freshDir();
    writeFileSync(join(weakDir, 'secret.key'), 'x'.repeat(40));
    expect(loadServerSecret(loadConfig({ ROTOR_DATA_DIR: weakDir }).secret).weak).toEqual({
      name: `${join(weakDir, 'secret.key')} (the server secret, read when ROTOR_SECRET is unset)`,
      reason: 'it decodes (as base64) to 30 bytes, fewer than 32',
    });

    const shortDir = freshDir();
    writeFileSync(join(shortDir, 'secret.key'), 'x'.repeat(31));
    expect(() => loadServerSecret(loadConfig({ ROTOR_DATA_DIR: shortDir }).secret)).toThrow(
      /secret\.key \(the server secret, read when ROTOR_SECRET is unset\) is too short; delete it to generate a new one, or use at least 32 random bytes as hex or base64/,
    );
  });
});

describe('start-up decision on a weak secret (src/runtime/weak-secret-gate.ts)', () => {
  const weak = { name: 'ROTOR_SECRET', reason: 'it repeats a block of 1 byte' };

  it('a database without tokens or signing keys is refused, naming ROTOR_SECRET and how to make a good one', async () => {
    const lines: string[] = [];
    await expect(
      admitWeakSecret(
        { holdsSecretKeyedData: async () => false },
        weak,
        createLogger('debug', (l) => void lines.push(l)),
      ),
    ).rejects.toThrow(
      new ConfigError(
        'ROTOR_SECRET is too weak: it repeats a block of 1 byte; use at least 32 random bytes as hex or base64, e.g. the output of `openssl rand -hex 32`. A weak secret is accepted only on a database that already holds tokens made under it; this one holds none',
      ),
    );
    expect(lines).toEqual([]);
  });

  it('a database with tokens starts, with one warn line naming the source', async () => {
    const lines: string[] = [];
    await admitWeakSecret(
      { holdsSecretKeyedData: async () => true },
      weak,
      createLogger('debug', (l) => void lines.push(l)),
    );
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as { level: string; msg: string; secret_source: string };
    expect(line).toMatchObject({ level: 'warn', secret_source: 'ROTOR_SECRET' });
    expect(line.msg).toMatch(
      /^the server secret is weak: it repeats a block of 1 byte; the database holds tokens keyed by it, so the server starts/,
    );
  });
});

describe('ROTOR_SECRET_PREVIOUS and ROTOR_SECRET_DROP_UNKNOWN (docs/server-key.md)', () => {
  const current = randomBytes(32).toString('hex');
  const load = (env: Record<string, string>) =>
    loadConfig({ ROTOR_DATA_DIR: freshDir(), ROTOR_SECRET: current, ...env });
  const a = randomBytes(32).toString('hex');
  const b = randomBytes(32).toString('base64url');

  it('is a comma-separated list of older secrets, spaces around them ignored; unset or empty: none', () => {
    expect(load({ ROTOR_SECRET_PREVIOUS: ` ${a} , ${b}` }).previousSecrets).toEqual([a, b]);
    expect(load({}).previousSecrets).toEqual([]);
    expect(load({ ROTOR_SECRET_PREVIOUS: '' }).previousSecrets).toEqual([]);
  });

  it.each([
    [`${a},,${b}`, 'ROTOR_SECRET_PREVIOUS entry 2 is empty'],
    [`${a},short`, 'ROTOR_SECRET_PREVIOUS entry 2 is too short'],
    [`${a},${a}`, 'ROTOR_SECRET_PREVIOUS names one secret twice'],
    [`${a},${current}`, 'ROTOR_SECRET_PREVIOUS repeats ROTOR_SECRET'],
    [
      [a, b, `${a.slice(1)}x`, `${b.slice(1)}y`, `${a}z`].join(','),
      'ROTOR_SECRET_PREVIOUS holds at most 4 secrets, got 5',
    ],
  ])('refuses %s, naming the entry and never the value', (value, message) => {
    let error: unknown;
    try {
      load({ ROTOR_SECRET_PREVIOUS: value });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain(a);
    expect((error as Error).message).not.toContain(current);
  });

  it('ROTOR_SECRET_DROP_UNKNOWN is true or false, false by default', () => {
    expect(load({}).dropUnknownKeys).toBe(false);
    expect(load({ ROTOR_SECRET_DROP_UNKNOWN: 'true' }).dropUnknownKeys).toBe(true);
    expect(load({ ROTOR_SECRET_DROP_UNKNOWN: 'false' }).dropUnknownKeys).toBe(false);
    expect(() => load({ ROTOR_SECRET_DROP_UNKNOWN: 'yes' })).toThrow(
      'ROTOR_SECRET_DROP_UNKNOWN must be true or false, got "yes"',
    );
  });
});
