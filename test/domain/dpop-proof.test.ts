import { describe, expect, it } from 'vitest';
import {
  accessTokenHash,
  checkProofClaims,
  checkProofHeader,
  dpopChallenge,
  validateJkt,
  type ProofExpectations,
} from '../../src/domain/dpop-proof.js';
import { DpopNonces, dpopNonceKey } from '../../src/domain/dpop-nonce.js';
import { NOW } from './fixtures.js';

const JWK = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' };
const URL_ = 'http://127.0.0.1:8080/oauth/token';

describe('DPoP proof header checks (RFC 9449 §4.3)', () => {
  it('accepts typ dpop+jwt, an allowed asymmetric alg and a public jwk', () => {
    expect(checkProofHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: JWK })).toEqual({ alg: 'ES256', jwk: JWK });
  });
  it.each([
    [{ typ: 'JWT', alg: 'ES256', jwk: JWK }, /typ must be "dpop\+jwt"/],
    [{ typ: 'dpop+jwt', alg: 'none', jwk: JWK }, /alg must be one of/],
    [{ typ: 'dpop+jwt', alg: 'HS256', jwk: JWK }, /alg must be one of/],
    [{ typ: 'dpop+jwt', alg: 'ES256' }, /must carry the public key as a jwk header/],
    [{ typ: 'dpop+jwt', alg: 'ES256', jwk: { ...JWK, d: 'secret' } }, /jwk must be a public key/],
    [{ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'oct', k: 'c2VjcmV0' } }, /jwk must be a public key/],
    [{ typ: 'dpop+jwt', alg: 'ES256', jwk: { kty: 'XYZ' } }, /EC, RSA or OKP/],
  ])('refuses %j', (header, message) => {
    expect(() => checkProofHeader(header)).toThrow(message);
  });
});

describe('DPoP proof claim checks (RFC 9449 §4.3)', () => {
  const expect_: ProofExpectations = {
    htm: 'POST',
    htus: [URL_, 'https://rotor.example/oauth/token'],
    ath: accessTokenHash('rtr_sa_x'),
    athRequired: false,
    now: NOW,
    maxAgeSeconds: 60,
  };
  const iat = Math.floor(NOW / 1000);
  const ok = { jti: 'j1', htm: 'POST', htu: URL_, iat };

  it('accepts a fresh proof for either accepted URL, ignoring query, fragment and default ports', () => {
    expect(checkProofClaims(ok, expect_)).toEqual({ jti: 'j1', iat, nonce: undefined });
    expect(checkProofClaims({ ...ok, htu: 'HTTPS://Rotor.Example:443/oauth/token?x=1#f' }, expect_).jti).toBe('j1');
    expect(checkProofClaims({ ...ok, nonce: 'n' }, expect_).nonce).toBe('n');
  });
  it.each([
    [{ ...ok, jti: '' }, /jti of 1 to 256/],
    [{ ...ok, htm: 'GET' }, /htm must be "POST"/],
    [{ ...ok, htu: 'http://127.0.0.1:8080/oauth/introspect' }, /htu does not name this endpoint/],
    [{ ...ok, htu: 'not a url' }, /htu does not name/],
    [{ ...ok, iat: iat - 66 }, /too old/],
    [{ ...ok, iat: iat + 6 }, /iat lies in the future/],
    [{ ...ok, iat: 'now' }, /numeric iat/],
    [{ ...ok, ath: 'wrong' }, /ath does not match/],
    [{ ...ok, nonce: 5 }, /nonce must be a non-empty string/],
  ])('refuses %j', (payload, message) => {
    expect(() => checkProofClaims(payload, expect_)).toThrow(message);
  });
  it('keeps the skew: 65 s old and 5 s ahead still pass with a 60 s maximum age', () => {
    expect(() => checkProofClaims({ ...ok, iat: iat - 65 }, expect_)).not.toThrow();
    expect(() => checkProofClaims({ ...ok, iat: iat + 5 }, expect_)).not.toThrow();
  });
  it('requires ath on a call and checks it against the token', () => {
    const call = { ...expect_, athRequired: true };
    expect(() => checkProofClaims(ok, call)).toThrow(/must carry ath/);
    expect(checkProofClaims({ ...ok, ath: accessTokenHash('rtr_sa_x') }, call).jti).toBe('j1');
  });
  it('every refusal is invalid_dpop_proof', () => {
    try {
      checkProofClaims({ ...ok, htm: 'GET' }, expect_);
      expect.unreachable();
    } catch (e) {
      expect((e as { code: string }).code).toBe('invalid_dpop_proof');
    }
  });
});

describe('DPoP helpers', () => {
  it('validates a thumbprint and quotes a challenge safely', () => {
    expect(validateJkt('f', 'a'.repeat(43))).toBe('a'.repeat(43));
    expect(() => validateJkt('policy.dpop_jkt', 'short')).toThrow(/policy.dpop_jkt must be an RFC 7638/);
    expect(dpopChallenge('invalid_dpop_proof', 'say "hi"\\')).toMatch(
      /^DPoP error="invalid_dpop_proof", error_description="say 'hi''", algs="ES256 /,
    );
  });
});

describe('stateless DPoP nonces (RFC 9449 §8)', () => {
  const secret = new Uint8Array(32).fill(7);
  const nonces = new DpopNonces(dpopNonceKey(secret), 60);

  it('accepts the nonce of the current and the previous step, and no older one', () => {
    const n = nonces.current(NOW);
    expect(n).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(nonces.accepts(n, NOW)).toBe(true);
    expect(nonces.accepts(n, NOW + 60_000)).toBe(true);
    expect(nonces.accepts(n, NOW + 120_000)).toBe(false);
    expect(nonces.accepts('x', NOW)).toBe(false);
  });
  it('replicas with the same secret agree; another secret does not', () => {
    const replica = new DpopNonces(dpopNonceKey(new Uint8Array(32).fill(7)), 60);
    const other = new DpopNonces(dpopNonceKey(new Uint8Array(32).fill(8)), 60);
    expect(replica.accepts(nonces.current(NOW), NOW)).toBe(true);
    expect(other.accepts(nonces.current(NOW), NOW)).toBe(false);
  });
  it('a replica whose current key is new accepts nonces of a previous key, and issues under the new one', () => {
    const rotated = new DpopNonces(dpopNonceKey(new Uint8Array(32).fill(8)), 60, [dpopNonceKey(secret)]);
    expect(rotated.accepts(nonces.current(NOW), NOW)).toBe(true);
    expect(nonces.accepts(rotated.current(NOW), NOW)).toBe(false);
    expect(rotated.current(NOW)).not.toBe(nonces.current(NOW));
  });
});
