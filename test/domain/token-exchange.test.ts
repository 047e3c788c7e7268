import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../src/domain/input-limits.js';
import {
  GRANT_TOKEN_EXCHANGE,
  KNOWN_TOKEN_TYPES,
  TOKEN_TYPE_ACCESS_TOKEN,
  TOKEN_TYPE_JWT,
  requestedAudiences,
  validateExchange,
  type ExchangeParams,
} from '../../src/domain/token-exchange.js';
import { formatSecret } from '../../src/domain/token-secret.js';
import { expectRotorError, seededRandom } from './fixtures.js';

const SUBJECT = formatSecret('personal', seededRandom('exchange-subject'));

function params(overrides: Partial<ExchangeParams> = {}): ExchangeParams {
  return {
    grantType: GRANT_TOKEN_EXCHANGE,
    subjectToken: SUBJECT,
    subjectTokenType: TOKEN_TYPE_ACCESS_TOKEN,
    actorToken: '',
    actorTokenType: '',
    requestedTokenType: '',
    scope: '',
    audience: [],
    resource: [],
    idempotencyKey: '',
    ...overrides,
  };
}

describe('validateExchange', () => {
  describe('a minimal valid request', () => {
    it('is accepted with defaults filled in', () => {
      expect(validateExchange(params())).toEqual({
        subjectToken: SUBJECT,
        subjectTokenType: TOKEN_TYPE_ACCESS_TOKEN,
        actorToken: undefined,
        actorTokenType: undefined,
        requestedTokenType: TOKEN_TYPE_ACCESS_TOKEN,
        scopes: [],
        audience: [],
        resource: [],
        idempotencyKey: undefined,
      });
    });

    it('keeps every field of a full request', () => {
      const out = validateExchange(
        params({
          subjectTokenType: TOKEN_TYPE_JWT,
          subjectToken: 'eyJ.a.b',
          actorToken: 'eyJ.c.d',
          actorTokenType: TOKEN_TYPE_JWT,
          requestedTokenType: TOKEN_TYPE_JWT,
          scope: 'read write',
          audience: ['api', 'api'],
          resource: ['https://rs.example/'],
          idempotencyKey: 'Kq8xP2mZ7vB4nL9wR3tY6e',
        }),
      );
      expect(out).toEqual({
        subjectToken: 'eyJ.a.b',
        subjectTokenType: TOKEN_TYPE_JWT,
        actorToken: 'eyJ.c.d',
        actorTokenType: TOKEN_TYPE_JWT,
        requestedTokenType: TOKEN_TYPE_JWT,
        scopes: ['read', 'write'],
        audience: ['api'],
        resource: ['https://rs.example/'],
        idempotencyKey: 'Kq8xP2mZ7vB4nL9wR3tY6e',
      });
    });
  });

  describe('grant_type', () => {
    it('refuses a different grant type with unsupported_grant_type', () => {
      const err = expectRotorError(
        () => validateExchange(params({ grantType: 'client_credentials' })),
        'unsupported_grant_type',
        `grant_type must be ${GRANT_TOKEN_EXCHANGE}`,
      );
      expect(err.details.field).toBe('grant_type');
    });

    it('refuses an empty grant type with invalid_argument', () => {
      const err = expectRotorError(
        () => validateExchange(params({ grantType: '' })),
        'invalid_argument',
        'grant_type is required',
      );
      expect(err.details.field).toBe('grant_type');
    });

    it('is checked before anything else', () => {
      expectRotorError(
        () => validateExchange(params({ grantType: 'password', subjectToken: '' })),
        'unsupported_grant_type',
        'grant_type',
      );
    });
  });

  describe('required subject parameters', () => {
    it('refuses an empty subject_token', () => {
      const err = expectRotorError(
        () => validateExchange(params({ subjectToken: '' })),
        'invalid_argument',
        'subject_token is required',
      );
      expect(err.details.field).toBe('subject_token');
    });

    it('refuses an empty subject_token_type', () => {
      const err = expectRotorError(
        () => validateExchange(params({ subjectTokenType: '' })),
        'invalid_argument',
        'subject_token_type is required',
      );
      expect(err.details.field).toBe('subject_token_type');
    });
  });

  describe('actor_token and actor_token_type', () => {
    it('refuses actor_token without actor_token_type', () => {
      const err = expectRotorError(
        () => validateExchange(params({ actorToken: 'eyJ.c.d' })),
        'invalid_argument',
        'actor_token_type is required when actor_token is present',
      );
      expect(err.details.field).toBe('actor_token_type');
    });

    it('refuses actor_token_type without actor_token', () => {
      const err = expectRotorError(
        () => validateExchange(params({ actorTokenType: TOKEN_TYPE_JWT })),
        'invalid_argument',
        'actor_token_type must not be sent without actor_token',
      );
      expect(err.details.field).toBe('actor_token_type');
    });
  });

  describe('token type URNs', () => {
    it('accepts every RFC 8693 §3 token type as subject_token_type', () => {
      for (const type of KNOWN_TOKEN_TYPES) {
        expect(validateExchange(params({ subjectTokenType: type })).subjectTokenType).toBe(type);
      }
    });

    it.each([
      ['subject_token_type', { subjectTokenType: 'urn:ietf:params:oauth:token-type:bogus' }],
      ['actor_token_type', { actorToken: 'eyJ.c.d', actorTokenType: 'urn:example:custom' }],
      ['requested_token_type', { requestedTokenType: 'access_token' }],
    ] as const)('refuses an unknown %s, naming the field and not echoing the value', (field, overrides) => {
      const err = expectRotorError(
        () => validateExchange(params(overrides)),
        'invalid_argument',
        `${field} is not a known token type`,
      );
      expect(err.details.field).toBe(field);
      expect(err.message).not.toMatch(/bogus|custom|: access_token/);
    });
  });

  describe('size limits', () => {
    it('accepts a subject_token of exactly the limit', () => {
      const token = 'a'.repeat(LIMITS.tokenParameter);
      expect(validateExchange(params({ subjectToken: token })).subjectToken).toBe(token);
    });

    it('refuses an oversized subject_token without echoing it', () => {
      const token = 'a'.repeat(LIMITS.tokenParameter + 1);
      const err = expectRotorError(
        () => validateExchange(params({ subjectToken: token })),
        'invalid_argument',
        'subject_token is too long',
      );
      expect(err.details.field).toBe('subject_token');
      expect(err.message.length).toBeLessThan(100);
    });

    it('refuses an oversized actor_token', () => {
      const err = expectRotorError(
        () =>
          validateExchange(
            params({ actorToken: 'a'.repeat(LIMITS.tokenParameter + 1), actorTokenType: TOKEN_TYPE_JWT }),
          ),
        'invalid_argument',
        'actor_token is too long',
      );
      expect(err.details.field).toBe('actor_token');
    });

    it('refuses too many audience values', () => {
      const audience = Array.from({ length: LIMITS.audiences + 1 }, (_, i) => `aud${i}`);
      expectRotorError(() => validateExchange(params({ audience })), 'invalid_argument', 'audience: at most');
    });

    it('refuses an invalid resource value', () => {
      const err = expectRotorError(
        () => validateExchange(params({ resource: ['has space'] })),
        'invalid_argument',
        'resource:',
      );
      expect(err.details.field).toBe('resource');
    });
  });

  describe('scope', () => {
    it('parses a space-delimited list, dropping empties and duplicates', () => {
      expect(validateExchange(params({ scope: ' read  write read ' })).scopes).toEqual(['read', 'write']);
    });

    it('refuses a scope with a forbidden character', () => {
      const err = expectRotorError(
        () => validateExchange(params({ scope: 'read wr"ite' })),
        'invalid_argument',
        'scope: each scope must be',
      );
      expect(err.details.field).toBe('scope');
    });

    it('refuses an oversized scope parameter', () => {
      expectRotorError(
        () => validateExchange(params({ scope: 'a '.repeat(5000) })),
        'invalid_argument',
        'scope is too long',
      );
    });
  });

  describe('idempotency_key', () => {
    it('refuses a guessable (short) key', () => {
      const err = expectRotorError(
        () => validateExchange(params({ idempotencyKey: 'retry-1' })),
        'invalid_argument',
        'idempotency_key: must be 22-128',
      );
      expect(err.details.field).toBe('idempotency_key');
    });
  });
});

describe('requestedAudiences', () => {
  it('joins audience and resource in order, without repeats', () => {
    expect(requestedAudiences({ audience: ['a', 'b'], resource: ['https://r.example/', 'b'] })).toEqual([
      'a',
      'b',
      'https://r.example/',
    ]);
    expect(requestedAudiences({ audience: [], resource: [] })).toEqual([]);
  });
});
