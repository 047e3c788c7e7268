import { describe, expect, it } from 'vitest';
import { narrowAudiences } from '../../src/domain/audiences.js';
import { accessTokenClaims, identityForRotorToken, looksLikeJwt, newJwtId } from '../../src/domain/jwt-access-token.js';
import { expectRotorError, MINUTE, NOW, seededRandom, tokenRecord } from './fixtures.js';

const ISSUER = 'https://rotor.example';

describe('identityForRotorToken', () => {
  const token = tokenRecord({ scopes: ['read', 'write', 'rotor:rotate'], audiences: ['api', 'billing'] });

  it('speaks for the owner; client_id and token_id are the token; rotor:* scopes are left out by default', () => {
    expect(identityForRotorToken(token, token.expiresAt, { scopes: [], audiences: [] })).toEqual({
      sub: 'user-1',
      scopes: ['read', 'write'],
      audiences: ['api', 'billing'],
      expiresAt: token.expiresAt,
      clientId: token.id,
      source: { tokenId: token.id, familyId: token.familyId },
    });
  });

  it('narrows scopes and audiences, never widens', () => {
    expect(identityForRotorToken(token, token.expiresAt, { scopes: ['read'], audiences: ['billing'] })).toMatchObject({
      scopes: ['read'],
      audiences: ['billing'],
    });
    expectRotorError(
      () => identityForRotorToken(token, token.expiresAt, { scopes: ['read', 'admin'], audiences: [] }),
      'invalid_scope',
      'requested scopes exceed the scopes held: admin',
    );
    expectRotorError(
      () => identityForRotorToken(token, token.expiresAt, { scopes: [], audiences: ['elsewhere'] }),
      'invalid_target',
      'audience not allowed for this token: elsewhere',
    );
  });

  it('refuses rotor:* scopes even when held', () => {
    expectRotorError(
      () => identityForRotorToken(token, token.expiresAt, { scopes: ['rotor:rotate'], audiences: [] }),
      'invalid_scope',
      'scopes rotor:* are not issued in JWT access tokens: rotor:rotate',
    );
  });
});

describe('narrowAudiences', () => {
  it('lets a token without audiences (unrestricted) name any audience', () => {
    expect(narrowAudiences([], ['https://a.example'])).toEqual(['https://a.example']);
    expect(narrowAudiences([], [])).toEqual([]);
  });
});

describe('accessTokenClaims', () => {
  const identity = {
    sub: 'user-1',
    scopes: ['read'],
    audiences: ['api'],
    expiresAt: NOW + 60 * MINUTE,
    clientId: 'tok_1',
    source: { tokenId: 'tok_1', familyId: 'fam_1' },
  };

  it('fills the RFC 9068 claims; lifetime is the TTL', () => {
    expect(accessTokenClaims(identity, ISSUER, NOW + 400, 300, 'jwt_x')).toEqual({
      iss: ISSUER,
      sub: 'user-1',
      aud: 'api',
      iat: NOW / 1000,
      exp: NOW / 1000 + 300,
      jti: 'jwt_x',
      client_id: 'tok_1',
      scope: 'read',
      token_id: 'tok_1',
      family_id: 'fam_1',
    });
  });

  it('never outlives what it was derived from', () => {
    expect(accessTokenClaims({ ...identity, expiresAt: NOW + 42_500 }, ISSUER, NOW, 300, 'jwt_x').exp).toBe(
      NOW / 1000 + 42,
    );
    expectRotorError(
      () => accessTokenClaims({ ...identity, expiresAt: NOW + 999 }, ISSUER, NOW, 300, 'jwt_x'),
      'token_expired',
      'expires within a second',
    );
  });

  it('defaults aud to the issuer and client_id to sub; omits an empty scope; carries act', () => {
    const c = accessTokenClaims(
      {
        sub: 'sa-deployer',
        scopes: [],
        audiences: [],
        expiresAt: NOW + 60 * MINUTE,
        act: { iss: 'https://ci.example', sub: 'job-1' },
      },
      ISSUER,
      NOW,
      300,
      'jwt_y',
    );
    expect(c).toEqual({
      iss: ISSUER,
      sub: 'sa-deployer',
      aud: ISSUER,
      iat: NOW / 1000,
      exp: NOW / 1000 + 300,
      jti: 'jwt_y',
      client_id: 'sa-deployer',
      act: { iss: 'https://ci.example', sub: 'job-1' },
    });
    expect(accessTokenClaims({ ...identity, audiences: ['a', 'b'] }, ISSUER, NOW, 300, 'j').aud).toEqual(['a', 'b']);
  });
});

describe('newJwtId and looksLikeJwt', () => {
  it('makes ids in the style of Rotor ids, from the random source', () => {
    expect(newJwtId(seededRandom('j'))).toMatch(/^jwt_[0-9A-Za-z]{22}$/);
    expect(newJwtId(seededRandom('j'))).toBe(newJwtId(seededRandom('j')));
  });

  it('tells a JWS compact serialisation from a Rotor secret', () => {
    expect(looksLikeJwt('eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln')).toBe(true);
    expect(looksLikeJwt(`rtr_pat_${'A'.repeat(49)}`)).toBe(false);
    expect(looksLikeJwt('a.b')).toBe(false);
    expect(looksLikeJwt('a.b.c.d')).toBe(false);
  });
});
