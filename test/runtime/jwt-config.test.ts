import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/runtime/config.js';

const base = () => ({
  ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-cfg-')),
  ROTOR_SECRET: randomBytes(32).toString('hex'),
});

describe('JWT configuration', () => {
  it('has documented defaults: no explicit issuer, 300 s tokens, weekly ES256 keys', () => {
    expect(loadConfig(base()).jwt).toEqual({
      issuer: undefined,
      accessTokenTtlSeconds: 300,
      keyRotationSeconds: 604_800,
      signingAlg: 'ES256',
    });
  });

  it('accepts an issuer URL and drops a trailing slash', () => {
    expect(loadConfig({ ...base(), ROTOR_ISSUER: 'https://auth.example/' }).jwt.issuer).toBe('https://auth.example');
    expect(loadConfig({ ...base(), ROTOR_ISSUER: 'https://auth.example/rotor/' }).jwt.issuer).toBe(
      'https://auth.example/rotor',
    );
  });

  it.each([
    [{ ROTOR_ISSUER: 'auth.example' }, 'ROTOR_ISSUER must be an absolute http(s) URL'],
    [{ ROTOR_ISSUER: 'ftp://auth.example' }, 'ROTOR_ISSUER must use https'],
    [{ ROTOR_ISSUER: 'https://auth.example/?a=1' }, 'ROTOR_ISSUER must not have a query or fragment'],
    [{ ROTOR_ISSUER: 'https://auth.example/#x' }, 'ROTOR_ISSUER must not have a query or fragment'],
    [{ ROTOR_ISSUER: 'https://u:p@auth.example' }, 'ROTOR_ISSUER must not contain credentials'],
    [
      { ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS: '0' },
      'ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS must be a whole number of seconds between 1 and 86400, got "0"',
    ],
    [
      { ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS: '86401' },
      'ROTOR_JWT_ACCESS_TOKEN_TTL_SECONDS must be a whole number of seconds between 1 and 86400',
    ],
    [
      { ROTOR_JWT_KEY_ROTATION_SECONDS: '60' },
      'ROTOR_JWT_KEY_ROTATION_SECONDS must be a whole number of seconds between 3600 and 31536000, got "60"',
    ],
    [{ ROTOR_JWT_KEY_ROTATION_SECONDS: '1h' }, 'ROTOR_JWT_KEY_ROTATION_SECONDS must be a whole number'],
    [{ ROTOR_JWT_SIGNING_ALG: 'RS256' }, 'ROTOR_JWT_SIGNING_ALG must be one of ES256, EdDSA'],
  ])('refuses %o naming the variable', (env, message) => {
    expect(() => loadConfig({ ...base(), ...env })).toThrow(ConfigError);
    expect(() => loadConfig({ ...base(), ...env })).toThrow(message);
  });
});
