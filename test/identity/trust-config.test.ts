/** ROTOR_TRUST_CONFIG validation: every bad field is named, unknown fields are refused. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTrustConfig, TrustConfigError } from '../../src/identity/trust-config.js';
import { ConfigError, loadConfig } from '../../src/runtime/config.js';

const CI_EXAMPLE = {
  issuers: [{ issuer: 'https://ci.example', discovery: true, audiences: ['rotor'], algorithms: ['RS256', 'ES256'] }],
  federation: [
    {
      issuer: 'https://ci.example',
      subject: 'project_path:group/app:*',
      audience: 'rotor',
      claims: { namespace_id: '42' },
      service_account: 'sa-deployer',
      scopes: ['deploy'],
      max_lifetime_seconds: 3600,
    },
  ],
};

const clone = () =>
  structuredClone(CI_EXAMPLE) as unknown as {
    issuers: Record<string, unknown>[];
    federation: Record<string, unknown>[];
  };

function refused(doc: unknown): string {
  try {
    parseTrustConfig(doc, 86400 * 365);
  } catch (e) {
    if (e instanceof TrustConfigError) return e.message;
    throw e;
  }
  throw new Error('expected the config to be refused');
}

describe('trust config', () => {
  it('accepts a CI example and fills the defaults', () => {
    const t = parseTrustConfig(CI_EXAMPLE, 86400 * 365);
    expect(t.issuers[0]).toMatchObject({
      issuer: 'https://ci.example',
      keys: { kind: 'discovery', algorithm: 'oidc' },
      clockSkewSeconds: 60,
      maxTokenAgeSeconds: 86400,
      requireJti: true,
      fetchTimeoutMs: 3000,
      jwksCooldownSeconds: 30,
      typ: undefined,
    });
    expect(t.federation[0]).toMatchObject({
      serviceAccount: 'sa-deployer',
      scopes: ['deploy'],
      capToTokenExpiry: true,
      tokenAudiences: [],
    });
  });

  const cases: [string, (d: ReturnType<typeof clone>) => unknown, string][] = [
    ['unknown top-level field', (d) => ({ ...d, extra: 1 }), 'extra: is not a known field'],
    [
      'unknown issuer field',
      (d) => {
        d.issuers[0]!.jwks_url = 'x';
        return d;
      },
      'issuers[0].jwks_url: is not a known field',
    ],
    ['no issuers', () => ({ issuers: [] }), 'issuers: must be a non-empty array'],
    [
      'http issuer',
      (d) => {
        d.issuers[0]!.issuer = 'http://ci.example';
        return d;
      },
      'issuers[0].issuer: must be https (http only for loopback hosts or with allow_insecure_http)',
    ],
    [
      'two key sources',
      (d) => {
        d.issuers[0]!.jwks_uri = 'https://ci.example/jwks';
        return d;
      },
      'issuers[0]: needs exactly one key source: discovery, jwks_uri or jwks',
    ],
    [
      'HS256',
      (d) => {
        d.issuers[0]!.algorithms = ['HS256'];
        return d;
      },
      'issuers[0].algorithms[0]: must be one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519',
    ],
    [
      'skew too large',
      (d) => {
        d.issuers[0]!.clock_skew_seconds = 3600;
        return d;
      },
      'issuers[0].clock_skew_seconds: must be a whole number between 0 and 300',
    ],
    [
      'private inline key',
      (d) => {
        d.issuers[0]!.discovery = undefined;
        d.issuers[0]!.jwks = { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' }] };
        return d;
      },
      'issuers[0].jwks.keys[0]: must hold a public key only (remove private members)',
    ],
    [
      'rule for an unknown issuer',
      (d) => {
        d.federation[0]!.issuer = 'https://other.example';
        return d;
      },
      'federation[0].issuer: is not one of the issuers',
    ],
    [
      'rule scopes not a list',
      (d) => {
        d.federation[0]!.scopes = 'deploy';
        return d;
      },
      'federation[0].scopes: must be a non-empty array of strings',
    ],
    [
      'rule granting admin',
      (d) => {
        d.federation[0]!.scopes = ['rotor:admin'];
        return d;
      },
      'federation[0].scopes: rotor:admin may not be granted by federation',
    ],
    [
      'rule granting rotate',
      (d) => {
        d.federation[0]!.scopes = ['deploy', 'rotor:rotate'];
        return d;
      },
      'federation[0].scopes: rotor:rotate may not be granted by federation (a federated token is renewed by federating again)',
    ],
    [
      'rule scope with a space',
      (d) => {
        d.federation[0]!.scopes = ['a b'];
        return d;
      },
      'federation[0].scopes: each scope must be 1-128 printable characters without spaces, quotes or backslashes',
    ],
    [
      'rule audience the issuer does not accept',
      (d) => {
        d.federation[0]!.audience = 'other';
        return d;
      },
      "federation[0].audience: must be one of the issuer's audiences",
    ],
    [
      'rule lifetime beyond the server max',
      (d) => {
        d.federation[0]!.max_lifetime_seconds = 86400 * 366;
        return d;
      },
      'federation[0].max_lifetime_seconds: must be a whole number between 1 and 31536000',
    ],
    [
      'rule without lifetime',
      (d) => {
        delete d.federation[0]!.max_lifetime_seconds;
        return d;
      },
      'federation[0].max_lifetime_seconds: is required',
    ],
    [
      'rule with an unknown field',
      (d) => {
        d.federation[0]!.ttl = 5;
        return d;
      },
      'federation[0].ttl: is not a known field',
    ],
    [
      'rule subject only wildcards',
      (d) => {
        d.federation[0]!.subject = '**';
        return d;
      },
      'federation[0].subject: must contain more than wildcards',
    ],
    [
      'rule claims null',
      (d) => {
        d.federation[0]!.claims = null;
        return d;
      },
      'federation[0].claims: must be an object',
    ],
    ['issuer null', () => ({ issuers: [null] }), 'issuers[0]: must be an object'],
    ['document not an object', () => [], 'the document: must be an object'],
    [
      'rule claim not a string',
      (d) => {
        d.federation[0]!.claims = { namespace_id: 42 };
        return d;
      },
      'federation[0].claims.namespace_id: must be a non-empty string',
    ],
  ];
  for (const [name, mutate, message] of cases) {
    it(`refuses ${name}`, () => {
      expect(refused(mutate(clone()))).toBe(message);
    });
  }

  it('allows plain http for loopback issuers, and elsewhere only with allow_insecure_http', () => {
    const d = clone();
    d.issuers[0]!.issuer = 'http://127.0.0.1:8443';
    d.federation = [];
    expect(parseTrustConfig(d, 1000).issuers[0]!.allowInsecureHttp).toBe(false);
    d.issuers[0]!.issuer = 'http://ci.internal';
    d.issuers[0]!.allow_insecure_http = true;
    expect(parseTrustConfig(d, 1000).issuers[0]!.issuer).toBe('http://ci.internal');
  });

  it('loadConfig names ROTOR_TRUST_CONFIG and the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rotor-trust-'));
    const file = join(dir, 'trust.json');
    const d = clone();
    d.federation[0]!.scopes = [];
    writeFileSync(file, JSON.stringify(d));
    expect(() => loadConfig({ ROTOR_DATA_DIR: dir, ROTOR_TRUST_CONFIG: file })).toThrow(
      new ConfigError('ROTOR_TRUST_CONFIG: federation[0].scopes: must be a non-empty array of strings'),
    );
    writeFileSync(file, '{ not json');
    expect(() => loadConfig({ ROTOR_DATA_DIR: dir, ROTOR_TRUST_CONFIG: file })).toThrow(
      /^ROTOR_TRUST_CONFIG: cannot read .*trust\.json as JSON: /,
    );
    writeFileSync(file, JSON.stringify(CI_EXAMPLE));
    expect(loadConfig({ ROTOR_DATA_DIR: dir, ROTOR_TRUST_CONFIG: file }).trust?.federation).toHaveLength(1);
    expect(loadConfig({ ROTOR_DATA_DIR: dir }).trust).toBeUndefined();
  });
});
