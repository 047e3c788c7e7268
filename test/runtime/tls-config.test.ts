/**
 * ROTOR_TLS_CERT_FILE / ROTOR_TLS_KEY_FILE (README: "TLS"): both or neither, read and checked at
 * start, every refusal naming the variable and never quoting the key.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/runtime/config.js';
import { loadTlsConfig } from '../../src/runtime/tls-config.js';
import { ROOT } from '../support/process.js';

const FIXTURES = `${ROOT}test/fixtures/tls`;
const GOOD = { ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem`, ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` };
const scratch = mkdtempSync(join(tmpdir(), 'rotor-tls-config-'));
const garbage = join(scratch, 'garbage.pem');
writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');

describe('TLS configuration', () => {
  it('neither variable: plain text; both: the PEMs, absolute paths and the expiry', () => {
    expect(loadTlsConfig({})).toBeUndefined();
    const tls = loadTlsConfig(GOOD)!;
    expect(tls.cert).toEqual(readFileSync(GOOD.ROTOR_TLS_CERT_FILE));
    expect(tls.key).toEqual(readFileSync(GOOD.ROTOR_TLS_KEY_FILE));
    expect(tls.certFile).toBe(GOOD.ROTOR_TLS_CERT_FILE);
    expect(new Date(tls.validTo).toISOString()).toBe('2120-01-01T00:00:00.000Z');
  });

  it.each([
    [
      { ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem` },
      'ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither',
    ],
    [
      { ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` },
      'ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither',
    ],
    [
      { ...GOOD, ROTOR_TLS_CERT_FILE: '' },
      'ROTOR_TLS_CERT_FILE is set but empty: give a file, or unset it for plain text',
    ],
    [
      { ROTOR_TLS_CERT_FILE: ' ', ROTOR_TLS_KEY_FILE: ' ' },
      'ROTOR_TLS_CERT_FILE is set but empty: give a file, or unset it for plain text',
    ],
    [
      { ...GOOD, ROTOR_TLS_CERT_FILE: `${FIXTURES}/missing.pem` },
      `ROTOR_TLS_CERT_FILE: cannot read ${FIXTURES}/missing.pem (ENOENT)`,
    ],
    [{ ...GOOD, ROTOR_TLS_KEY_FILE: FIXTURES }, `ROTOR_TLS_KEY_FILE: cannot read ${FIXTURES} (EISDIR)`],
    [
      { ...GOOD, ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.key` },
      `ROTOR_TLS_CERT_FILE: ${FIXTURES}/server.key holds no PEM certificate`,
    ],
    [{ ...GOOD, ROTOR_TLS_CERT_FILE: garbage }, `ROTOR_TLS_CERT_FILE: ${garbage} holds no PEM certificate`],
    [
      { ...GOOD, ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.pem` },
      `ROTOR_TLS_KEY_FILE: ${FIXTURES}/server.pem holds no PEM private key`,
    ],
    [
      { ...GOOD, ROTOR_TLS_KEY_FILE: `${FIXTURES}/encrypted.key` },
      `ROTOR_TLS_KEY_FILE: ${FIXTURES}/encrypted.key is encrypted; give the key without a passphrase`,
    ],
    [
      { ...GOOD, ROTOR_TLS_KEY_FILE: `${FIXTURES}/other.key` },
      `ROTOR_TLS_KEY_FILE: ${FIXTURES}/other.key is not the key of the certificate in ${FIXTURES}/server.pem`,
    ],
  ])('%o is refused with a message naming the variable', (env, message) => {
    expect(() => loadTlsConfig(env)).toThrow(new ConfigError(message));
  });

  it('an expired certificate is refused with its expiry', () => {
    expect(() => loadTlsConfig(GOOD, Date.UTC(2121, 0, 1))).toThrow(
      new ConfigError(
        `ROTOR_TLS_CERT_FILE: the certificate in ${FIXTURES}/server.pem expired on 2120-01-01T00:00:00.000Z`,
      ),
    );
  });

  it('a relative path is read from the working directory and reported absolute', () => {
    const cwd = process.cwd();
    process.chdir(FIXTURES);
    try {
      expect(loadTlsConfig({ ROTOR_TLS_CERT_FILE: 'server.pem', ROTOR_TLS_KEY_FILE: 'server.key' })?.keyFile).toBe(
        `${FIXTURES}/server.key`,
      );
    } finally {
      process.chdir(cwd);
    }
  });
});
