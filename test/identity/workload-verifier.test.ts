/**
 * src/identity against real loopback issuers: key sources (discovery, jwks_uri, inline), the
 * RFC 8725 checks one by one, the jti replay cache, and the JWKS fetch discipline
 * (single-flight, one refetch per cooldown, down/slow issuers fail fast with `unavailable`).
 */
import { generateKeyPair } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/app/logger-port.js';
import { rotorErrorOf } from '../support/errors.js';
import { MemoryReplayCache } from '../../src/identity/replay-cache.js';
import { parseTrustConfig } from '../../src/identity/trust-config.js';
import { WorkloadVerifier } from '../../src/identity/workload-verifier.js';
import { hs256WithKey, startTestIssuer, unsecuredJwt, type TestIssuer } from '../support/jwt-issuer.js';
import { beforeTimer } from '../support/timer-race.js';

const quiet: Logger = { info() {}, warn() {}, error() {} };
const MAX_LIFETIME = 365 * 86400;

describe('WorkloadVerifier', () => {
  let ci: TestIssuer;
  let other: TestIssuer;
  let clock: number;
  const now = () => clock;

  beforeAll(async () => {
    ci = await startTestIssuer();
    other = await startTestIssuer();
  });
  afterAll(async () => {
    await ci.close();
    await other.close();
  });
  afterEach(() => {
    ci.mode = 'ok';
    other.mode = 'ok';
  });

  function verifier(issuerOverrides: Record<string, unknown> = {}) {
    clock = Date.now();
    const trust = parseTrustConfig(
      {
        issuers: [
          {
            issuer: ci.issuer,
            discovery: true,
            audiences: ['rotor'],
            algorithms: ['ES256'],
            jwks_cooldown_seconds: 30,
            ...issuerOverrides,
          },
          {
            issuer: other.issuer,
            jwks_uri: other.jwksUri,
            audiences: ['rotor'],
            algorithms: ['ES256'],
            fetch_timeout_ms: 300,
          },
        ],
      },
      MAX_LIFETIME,
    );
    return new WorkloadVerifier(trust, new MemoryReplayCache(), now, quiet);
  }

  it('verifies a JWT whose keys come from OIDC discovery and returns its claims', async () => {
    const v = verifier();
    const w = await v.verify(await ci.sign(clock), 'actor_token');
    expect(w.iss).toBe(ci.issuer);
    expect(w.sub).toBe('project_path:group/app:ref_type:branch:ref:main');
    expect(w.aud).toEqual(['rotor']);
    expect(w.claims.namespace_id).toBe('42');
  });

  it('verifies with inline keys and with an explicit jwks_uri', async () => {
    const inline = verifier({ discovery: undefined, jwks: ci.jwks() });
    const before = ci.jwksFetches;
    await inline.verify(await ci.sign(clock), 'actor_token');
    expect(ci.jwksFetches).toBe(before);
    const byUri = verifier();
    await byUri.verify(await other.sign(clock), 'subject_token');
  });

  describe('refuses', () => {
    const cases: [string, (v: WorkloadVerifier) => Promise<string>, string][] = [
      [
        'alg none',
        async () => unsecuredJwt({ iss: ci.issuer, sub: 's', aud: 'rotor', exp: clock / 1000 + 60, iat: clock / 1000 }),
        'actor_token is unsigned (alg none is not accepted)',
      ],
      [
        'HS256 keyed with the public key',
        async () =>
          hs256WithKey(
            { kid: ci.kid },
            { iss: ci.issuer, sub: 's', aud: 'rotor', exp: clock / 1000 + 60, iat: clock / 1000, jti: 'x' },
            await ci.publicPem(),
          ),
        "actor_token is signed with HS256, which this issuer's algorithms do not allow",
      ],
      [
        'an algorithm outside the allow-list',
        async () => ci.sign(clock, {}, { rsa: true }),
        "actor_token is signed with RS256, which this issuer's algorithms do not allow",
      ],
      [
        'an untrusted issuer',
        async () => ci.sign(clock, { iss: 'https://evil.example' }),
        'actor_token is from an issuer that is not trusted',
      ],
      [
        'a wrong aud',
        async () => ci.sign(clock, { aud: 'someone-else' }),
        'actor_token is not for an accepted audience (aud)',
      ],
      [
        'an expired token',
        async () => ci.sign(clock, { exp: Math.floor(clock / 1000) - 61 }),
        'actor_token has expired (exp)',
      ],
      [
        'nbf in the future',
        async () => ci.sign(clock, { nbf: Math.floor(clock / 1000) + 120 }),
        'actor_token is not valid yet (nbf)',
      ],
      [
        'iat too old',
        async () => ci.sign(clock, { iat: Math.floor(clock / 1000) - 86400 - 120, nbf: undefined }),
        'actor_token is too old or issued in the future (iat)',
      ],
      [
        'a jku header',
        async () => ci.sign(clock, {}, { header: { jku: 'https://evil.example/jwks' } }),
        'actor_token carries a jku header: keys come only from the trust configuration',
      ],
      [
        'an x5u header',
        async () => ci.sign(clock, {}, { header: { x5u: 'https://evil.example/cert.pem' } }),
        'actor_token carries a x5u header: keys come only from the trust configuration',
      ],
      [
        'an embedded jwk header',
        async () => ci.sign(clock, {}, { header: { jwk: ci.jwks().keys[0] } }),
        'actor_token carries a jwk header: keys come only from the trust configuration',
      ],
      ['a missing jti', async () => ci.sign(clock, {}, { omit: ['jti'] }), 'actor_token lacks the required jti claim'],
      [
        'a bad signature',
        async () => `${(await ci.sign(clock)).slice(0, -4)}AAAA`,
        'actor_token has an invalid signature',
      ],
      ['garbage', async () => 'not.a.jwt', 'actor_token is not a signed JWT (JWS compact serialization)'],
    ];
    for (const [name, make, message] of cases) {
      it(name, async () => {
        const v = verifier();
        const e = await rotorErrorOf(v.verify(await make(v), 'actor_token'));
        expect(e.code).toBe('invalid_workload_token');
        expect(e.message).toBe(message);
      });
    }

    it('a key the issuer never published (a forged kid), after one refetch', async () => {
      const v = verifier();
      await v.verify(await ci.sign(clock), 'actor_token');
      clock += 31_000;
      const before = ci.jwksFetches;
      const { privateKey } = await generateKeyPair('ES256');
      const e = await rotorErrorOf(
        v.verify(await ci.sign(clock, {}, { foreignKey: { key: privateKey, kid: 'forged' } }), 'actor_token'),
      );
      expect(e.message).toBe('actor_token names a key (kid) the issuer does not publish');
      expect(ci.jwksFetches - before).toBe(1);
    });

    it('an ID token (typ JWT) where the issuer requires typ at+jwt', async () => {
      const v = verifier({ typ: 'at+jwt' });
      await v.verify(await ci.sign(clock, {}, { typ: 'at+jwt' }), 'actor_token');
      const e = await rotorErrorOf(v.verify(await ci.sign(clock, {}, { typ: 'JWT' }), 'actor_token'));
      expect(e.message).toBe(
        "actor_token has the wrong type (typ header): this issuer's tokens are accepted only with the configured typ",
      );
    });

    it('a replayed jti, unless it is a retry with the same idempotency key', async () => {
      const v = verifier();
      const jwt = await ci.sign(clock);
      await v.verify(jwt, 'actor_token');
      const e = await rotorErrorOf(v.verify(jwt, 'actor_token'));
      expect(e.message).toBe('actor_token has been used before (jti replay): request a fresh JWT');
      const keyed = await ci.sign(clock);
      await v.verify(keyed, 'actor_token', { retryKeyDigest: 'k1' });
      await v.verify(keyed, 'actor_token', { retryKeyDigest: 'k1' });
      expect((await rotorErrorOf(v.verify(keyed, 'actor_token', { retryKeyDigest: 'k2' }))).code).toBe(
        'invalid_workload_token',
      );
    });

    it('accepts exp and nbf inside the clock skew, refuses them just past it', async () => {
      const v = verifier({ clock_skew_seconds: 30 });
      const t = Math.floor(clock / 1000);
      await v.verify(await ci.sign(clock, { exp: t - 20 }), 'actor_token');
      await v.verify(await ci.sign(clock, { nbf: t + 20 }), 'actor_token');
      expect((await rotorErrorOf(v.verify(await ci.sign(clock, { exp: t - 40 }), 'actor_token'))).message).toBe(
        'actor_token has expired (exp)',
      );
      expect((await rotorErrorOf(v.verify(await ci.sign(clock, { nbf: t + 40 }), 'actor_token'))).message).toBe(
        'actor_token is not valid yet (nbf)',
      );
    });
  });

  describe('JWKS fetching', () => {
    it('an unknown kid: 50 concurrent requests make one refetch; more within the cooldown make none', async () => {
      const v = verifier();
      await v.verify(await ci.sign(clock), 'actor_token');
      // The cooldown counts from the last fetch: the key rotates later than that.
      clock += 31_000;
      const before = ci.jwksFetches;
      await ci.rotateKey();
      const jwts = await Promise.all(Array.from({ length: 50 }, () => ci.sign(clock)));
      const results = await Promise.all(jwts.map((j) => v.verify(j, 'actor_token')));
      expect(results).toHaveLength(50);
      expect(ci.jwksFetches - before).toBe(1);

      // Another new key inside the cooldown: refused without fetching again.
      await ci.rotateKey();
      const again = await Promise.all(
        Array.from({ length: 20 }, async () => rotorErrorOf(v.verify(await ci.sign(clock), 'actor_token'))),
      );
      expect(again.every((e) => e.message === 'actor_token names a key (kid) the issuer does not publish')).toBe(true);
      expect(ci.jwksFetches - before).toBe(1);

      // After the cooldown, one more refetch finds it.
      clock += 31_000;
      await Promise.all(Array.from({ length: 20 }, async () => v.verify(await ci.sign(clock), 'actor_token')));
      expect(ci.jwksFetches - before).toBe(2);
    });

    it('a JWKS endpoint that is down: unavailable at once, and not fetched again before the cooldown', async () => {
      const v = verifier();
      other.mode = 'down';
      const before = other.jwksFetches;
      const errs = await Promise.all(
        Array.from({ length: 10 }, async () => rotorErrorOf(v.verify(await other.sign(clock), 'actor_token'))),
      );
      for (const e of errs) {
        expect(e.code).toBe('unavailable');
        expect(e.message).toBe(
          `keys of issuer ${other.issuer} are unavailable: the JWKS endpoint answered HTTP 500; retry later`,
        );
      }
      expect(other.jwksFetches - before).toBe(1);
      other.mode = 'ok';
      expect((await rotorErrorOf(v.verify(await other.sign(clock), 'actor_token'))).code).toBe('unavailable');
      clock += 31_000;
      await v.verify(await other.sign(clock), 'actor_token');
      expect(other.jwksFetches - before).toBe(2);
    });

    it('a JWKS endpoint that hangs: unavailable within the fetch timeout', async () => {
      const v = verifier();
      other.mode = 'slow';
      const jwt = await other.sign(clock);
      const started = Date.now();
      // The 300 ms fetch timeout must win against a 2 s timer on the same event loop (robust
      // under CPU load, unlike a wall-clock bound); the default 3000 ms timeout would lose.
      const e = await beforeTimer(rotorErrorOf(v.verify(jwt, 'actor_token')), 2000);
      expect(e.code).toBe('unavailable');
      expect(e.message).toBe(
        `keys of issuer ${other.issuer} are unavailable: the JWKS endpoint did not answer within 300 ms; retry later`,
      );
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    });

    it('a JWKS answer larger than 256 KiB is refused as unavailable, not buffered', async () => {
      const v = verifier();
      other.mode = 'huge';
      const e = await rotorErrorOf(v.verify(await other.sign(clock), 'actor_token'));
      expect(e.code).toBe('unavailable');
      expect(e.message).toBe(
        `keys of issuer ${other.issuer} are unavailable: the JWKS endpoint answered with more than 262144 bytes; retry later`,
      );
    });

    it('discovery that fails is unavailable too', async () => {
      const trust = parseTrustConfig(
        { issuers: [{ issuer: 'http://127.0.0.1:9', discovery: true, audiences: ['rotor'], algorithms: ['ES256'] }] },
        MAX_LIFETIME,
      );
      const v = new WorkloadVerifier(trust, new MemoryReplayCache(), now, quiet);
      const jwt = await ci.sign(clock, { iss: 'http://127.0.0.1:9' });
      const e = await rotorErrorOf(v.verify(jwt, 'subject_token'));
      expect(e.code).toBe('unavailable');
      expect(e.message).toMatch(
        /^keys of issuer http:\/\/127\.0\.0\.1:9 are unavailable: discovery failed \(.+\); retry later$/,
      );
    });
  });
});
