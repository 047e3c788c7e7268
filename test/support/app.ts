import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/runtime/config.js';
import { createApp, type AppOptions, type RotorApp } from '../../src/runtime/create-app.js';
import { createLogger } from '../../src/runtime/logger.js';
import { BRAKES_OFF } from './brakes-off.js';
import type { ScratchDatabase } from './engines.js';

/**
 * The application in process on a scratch database, as the use-case tests drive it: brakes off,
 * a fresh data directory and server secret, errors-only logging to nowhere. `env` adds or
 * overrides settings; `options` as for createApp (a test clock).
 */
export function scratchApp(
  db: ScratchDatabase,
  env: Record<string, string> = {},
  options: AppOptions = {},
): Promise<RotorApp> {
  const config = loadConfig({
    ...BRAKES_OFF,
    ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-app-data-')),
    ROTOR_DATABASE_URL: db.url,
    ROTOR_SECRET: randomBytes(32).toString('hex'),
    ...env,
  });
  return createApp(
    config,
    createLogger('error', () => undefined),
    options,
  );
}
