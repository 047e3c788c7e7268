import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDatabaseUrl } from '../store/database.js';
import { ConfigError } from './config-error.js';
import type { SecretSetting } from './server-secret.js';

/**
 * Creates the directories start-up writes to, before anything is opened, and turns what goes
 * wrong into a message naming the variable: the SQLite database's directory (`ROTOR_DATABASE_URL`,
 * else `ROTOR_DATA_DIR`) and, when secret.key holds the server secret, `ROTOR_DATA_DIR`.
 * Node's own `mkdirSync(…, { recursive: true })` never returns for a path such as `/proc/nope`
 * (mkdir fails with ENOENT while the parent exists, and it retries for ever), so each missing
 * level is created here one at a time.
 */
export function prepareDirectories(config: { databaseUrl: string; dataDir: string; secret?: SecretSetting }): void {
  const { engine, target } = parseDatabaseUrl(config.databaseUrl);
  if (engine === 'sqlite' && target !== ':memory:') {
    const dir = dirname(resolve(target));
    ensureDirectory(dir, dir === resolve(config.dataDir) ? 'ROTOR_DATA_DIR' : 'ROTOR_DATABASE_URL');
  }
  if (config.secret?.from === 'file') ensureDirectory(dirname(config.secret.path), 'ROTOR_DATA_DIR', 0o700);
}

/** Makes `dir` exist as a writable directory, or throws a ConfigError naming `variable`. */
export function ensureDirectory(dir: string, variable: string, mode = 0o777): void {
  const missing: string[] = [];
  for (let cur = resolve(dir); ; ) {
    let isDirectory: boolean;
    try {
      isDirectory = statSync(cur).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw cannot(variable, cur, dir, e);
      missing.unshift(cur);
      const parent = dirname(cur);
      if (parent === cur) break;
      cur = parent;
      continue;
    }
    if (!isDirectory)
      throw new ConfigError(
        `${variable}: ${cur} is a file, not a directory${cur === resolve(dir) ? '' : ` (on the way to ${dir})`}`,
      );
    break;
  }
  for (const d of missing) {
    try {
      mkdirSync(d, { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw cannot(variable, d, dir, e);
    }
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch {
    throw new ConfigError(`${variable}: the directory ${dir} is not writable by this process`);
  }
}

function cannot(variable: string, path: string, dir: string, e: unknown): ConfigError {
  const code = (e as NodeJS.ErrnoException).code ?? 'error';
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'EROFS'
        ? 'read-only file system'
        : `the file system refused (${code})`;
  return new ConfigError(
    `${variable}: cannot create the directory ${path}${path === resolve(dir) ? '' : ` (for ${dir})`}: ${why}`,
  );
}
