import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The version in Rotor's package.json (the one place it is written), found by walking up from this
 * module: src/runtime/ under the test runner, dist/src/runtime/ when built.
 */
function readVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'rotor' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; one level up
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

export const ROTOR_VERSION = readVersion();
