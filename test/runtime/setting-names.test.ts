import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig, loadProcessConfig } from '../../src/runtime/config.js';
import { CLI_SETTINGS, SERVER_SETTINGS, unknownSettingWarnings } from '../../src/runtime/setting-names.js';
import { ROOT } from '../support/process.js';

/** The ROTOR_* names configuration reads (gets, `in`) from `env`, whatever it then decides. */
function namesRead(env: Record<string, string>): Set<string> {
  const read = new Set<string>();
  const proxy = new Proxy(env, {
    get(target, key) {
      if (typeof key === 'string') read.add(key);
      return target[key as string];
    },
    has(target, key) {
      if (typeof key === 'string') read.add(key);
      return key in target;
    },
  });
  for (const load of [loadConfig, loadProcessConfig]) {
    try {
      load(proxy);
    } catch {
      // a refused value still shows which names were read
    }
  }
  return new Set([...read].filter((n) => n.startsWith('ROTOR_')));
}

describe('the one list of ROTOR_* variables (src/runtime/setting-names.ts)', () => {
  it('is exactly what configuration reads', () => {
    const secret = { ROTOR_SECRET: '90741e96932df58f7ca547076bc7183c53782a87ac6c0d6330c72e21612b47d4' };
    const read = new Set([
      ...namesRead(secret),
      ...namesRead({ ...secret, ROTOR_TLS_CERT_FILE: '/nonexistent', ROTOR_TLS_KEY_FILE: '/nonexistent' }),
    ]);
    expect([...read].sort()).toEqual([...SERVER_SETTINGS].sort());
  });

  it('is documented: every name is in the README configuration table', () => {
    const readme = readFileSync(`${ROOT}README.md`, 'utf8');
    for (const name of [...SERVER_SETTINGS, ...CLI_SETTINGS]) expect(readme, name).toContain(`\`${name}\``);
  });

  it('warns once per unknown variable, naming the closest known one; ROTOR_TEST_* and known names are quiet', () => {
    expect(
      unknownSettingWarnings({
        ROTOR_LOG_LEVLE: 'debug',
        ROTOR_HTTP_PROT: '1',
        ROTOR_LOG_LEVEL: 'info',
        ROTOR_TOKEN: 'x',
        ROTOR_TEST_DATABASE_URL: 'postgres://x',
        ROTOR_FROBNICATE_EVERYTHING: '1',
        HOME: '/root',
      }),
    ).toEqual([
      'ROTOR_FROBNICATE_EVERYTHING is not a Rotor setting (README, "Configuration", lists them); it is ignored',
      'ROTOR_HTTP_PROT is not a Rotor setting; did you mean ROTOR_HTTP_PORT?',
      'ROTOR_LOG_LEVLE is not a Rotor setting; did you mean ROTOR_LOG_LEVEL?',
    ]);
  });
});
