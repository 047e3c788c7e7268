/**
 * docs/bad-input.md "The presented token and the RFC 8693 parameters": the presented token
 * (subject_token) and the RFC 8693 parameters of ExchangeToken on the gRPC port, Connect on the
 * HTTP port, and POST /oauth/token, including requested_token_type. Every row of that section is
 * one case here, in the same order; suite.ts runs them against a real server on each engine and
 * checks the rows against the doc.
 */
import { GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_JWT } from '../../../src/domain/token-exchange.js';
import { describeBadInput } from './suite.js';
import {
  ACCESS,
  SCOPE_SYNTAX,
  SEVENTEEN_AUDIENCES,
  LONG_AUDIENCE,
  exchange,
  f,
  invalidArgument,
  invalidExchange,
  invalidRequest,
  unauthenticated,
  type Case,
} from './support.js';

const cases: Case[] = [
  // ---- the presented token (RFC 8693 subject_token) ----
  exchange(
    'malformed token',
    () => ({ subject_token: f.malformed }),
    unauthenticated('token is malformed'),
    invalidRequest('token is malformed'),
  ),
  exchange(
    'bad checksum (last character of a valid secret changed)',
    () => ({ subject_token: f.badChecksum }),
    unauthenticated('token checksum does not match'),
    invalidRequest('token checksum does not match'),
  ),
  exchange(
    'unknown token (well-formed, valid checksum, never issued)',
    () => ({ subject_token: f.unknown }),
    unauthenticated('token is unknown'),
    invalidRequest('token is unknown'),
  ),
  exchange(
    'expired token',
    () => ({ subject_token: f.expired.secret }),
    unauthenticated('token has expired'),
    invalidRequest('token has expired'),
  ),
  exchange(
    'revoked token',
    () => ({ subject_token: f.revoked.secret }),
    unauthenticated('token has been revoked'),
    invalidRequest('token has been revoked'),
  ),
  exchange(
    'token of a family revoked for reuse (its rotated predecessor was presented after the grace)',
    () => ({ subject_token: f.reused.secret }),
    unauthenticated('token has been revoked: reuse detected at'),
    invalidRequest('token has been revoked: reuse detected at'),
  ),
  exchange(
    'token of a family revoked by RevokeFamily',
    () => ({ subject_token: f.familyRevoked.secret }),
    unauthenticated('token has been revoked: its family was revoked at'),
    invalidRequest('token has been revoked: its family was revoked at'),
  ),
  invalidExchange(
    'subject_token longer than 8192 characters',
    () => ({ subject_token: 'a'.repeat(10_000) }),
    'subject_token is too long',
  ),

  // ---- RFC 8693 §2.1 parameters ----
  exchange(
    'wrong grant_type (authorization_code)',
    () => ({ grant_type: 'authorization_code' }),
    invalidArgument(`grant_type must be ${GRANT_TOKEN_EXCHANGE}`),
    { status: 400, error: 'unsupported_grant_type', description: `grant_type must be ${GRANT_TOKEN_EXCHANGE}` },
  ),
  invalidExchange('missing grant_type', () => ({ grant_type: '' }), 'grant_type is required'),
  invalidExchange('missing subject_token', () => ({ subject_token: '' }), 'subject_token is required'),
  invalidExchange('missing subject_token_type', () => ({ subject_token_type: '' }), 'subject_token_type is required'),
  invalidExchange(
    'actor_token without actor_token_type',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig' }),
    'actor_token_type is required when actor_token is present',
  ),
  invalidExchange(
    'actor_token_type without actor_token',
    () => ({ actor_token_type: TOKEN_TYPE_JWT }),
    'actor_token_type must not be sent without actor_token',
  ),
  invalidExchange(
    'actor_token_type other than jwt',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig', actor_token_type: ACCESS }),
    `actor_token_type must be ${TOKEN_TYPE_JWT}`,
  ),
  invalidExchange(
    'actor_token for a token without a workload binding',
    () => ({ actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig', actor_token_type: TOKEN_TYPE_JWT }),
    'actor_token is not accepted: this token has no workload binding',
  ),
  invalidExchange(
    'unknown token type URN as subject_token_type',
    () => ({ subject_token_type: 'urn:example:token-type:magic' }),
    'subject_token_type is not a known token type',
  ),
  invalidExchange(
    'subject_token_type jwt (federation not configured)',
    () => ({ subject_token_type: TOKEN_TYPE_JWT }),
    'subject_token_type jwt (workload federation) is not configured',
  ),
  exchange(
    'scope escalation on exchange (scope=read admin)',
    () => ({ scope: 'read admin' }),
    invalidArgument('requested scopes exceed the scopes held: admin'),
    { status: 400, error: 'invalid_scope', description: 'requested scopes exceed the scopes held: admin' },
  ),
  exchange(
    'audience widening on exchange',
    () => ({ audience: 'https://elsewhere.example' }),
    invalidArgument('audience not allowed for this token: https://elsewhere.example'),
    { status: 400, error: 'invalid_target', description: 'audience not allowed for this token' },
  ),
  invalidExchange(
    'idempotency_key too short',
    () => ({ idempotency_key: 'short' }),
    'idempotency_key: must be 22-128 characters',
  ),
  invalidExchange(
    'idempotency_key of 31 hex digits (124 bits)',
    () => ({ idempotency_key: '0123456789abcdef0123456789abcde'.split('').reverse().join('') }),
    'idempotency_key: a key of hex digits only must be at least 32 characters',
  ),
  invalidExchange(
    'idempotency_key that is not random (a counter)',
    () => ({ idempotency_key: '00000000000000000000000000004711' }),
    'idempotency_key: does not look random (too few distinct characters)',
  ),
  invalidExchange(
    'idempotency_key that is not random (a repeated pattern)',
    () => ({ idempotency_key: 'Xk3_9QpZXk3_9QpZXk3_9QpZXk3_9QpZ' }),
    'idempotency_key: does not look random (it repeats a shorter pattern)',
  ),
  invalidExchange(
    'idempotency_key longer than 128 characters',
    () => ({ idempotency_key: 'k'.repeat(129) }),
    'idempotency_key: must be 22-128 characters',
  ),
  invalidExchange(
    'more than 64 scopes on exchange (65 in scope)',
    () => ({ scope: Array.from({ length: 65 }, (_, i) => `s${i}`).join(' ') }),
    'scope: at most 64 scopes',
  ),
  exchange(
    'scope longer than 128 characters on exchange',
    () => ({ scope: 's'.repeat(129) }),
    invalidArgument(SCOPE_SYNTAX('scope')),
    invalidRequest(SCOPE_SYNTAX('scope')),
  ),
  exchange(
    'scope with a double quote on exchange',
    () => ({ scope: 're"ad' }),
    invalidArgument(SCOPE_SYNTAX('scope')),
    invalidRequest(SCOPE_SYNTAX('scope')),
  ),
  exchange(
    'scope with a backslash on exchange',
    () => ({ scope: 're\\ad' }),
    invalidArgument(SCOPE_SYNTAX('scope')),
    invalidRequest(SCOPE_SYNTAX('scope')),
  ),
  invalidExchange(
    'more than 16 audiences on exchange (17 audience parameters)',
    () => ({ audience: SEVENTEEN_AUDIENCES }),
    'audience: at most 16 values',
  ),
  invalidExchange(
    'audience longer than 256 characters on exchange',
    () => ({ audience: LONG_AUDIENCE }),
    'audience: must be at most 256 characters',
  ),
  invalidExchange(
    'resource that is not an absolute URI (relative/path)',
    () => ({ resource: 'relative/path' }),
    'resource: each value must be an absolute URI without a fragment',
  ),
  invalidExchange(
    'resource with a fragment (https://a.example/x#frag)',
    () => ({ resource: 'https://a.example/x#frag' }),
    'resource: each value must be an absolute URI without a fragment',
  ),

  // ---- requested_token_type and JWT access tokens (docs/jwt-access-tokens.md) ----
  invalidExchange(
    'unknown token type URN as requested_token_type',
    () => ({ requested_token_type: 'urn:example:token-type:magic' }),
    'requested_token_type is not a known token type',
  ),
  invalidExchange(
    'requested_token_type id_token (known, not issued)',
    () => ({ requested_token_type: 'urn:ietf:params:oauth:token-type:id_token' }),
    `requested_token_type must be ${ACCESS} or ${TOKEN_TYPE_JWT}`,
  ),
  exchange(
    'requested_token_type jwt with a rotor:* scope (scope=rotor:rotate)',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, scope: 'rotor:rotate' }),
    invalidArgument('scopes rotor:* are not issued in JWT access tokens: rotor:rotate'),
    {
      status: 400,
      error: 'invalid_scope',
      description: 'scopes rotor:* are not issued in JWT access tokens: rotor:rotate',
    },
  ),
  exchange(
    'requested_token_type jwt with scope escalation (scope=read admin)',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, scope: 'read admin' }),
    invalidArgument('requested scopes exceed the scopes held: admin'),
    { status: 400, error: 'invalid_scope', description: 'requested scopes exceed the scopes held: admin' },
  ),
  invalidExchange(
    'requested_token_type jwt with an actor_token for an unbound token',
    () => ({
      requested_token_type: TOKEN_TYPE_JWT,
      actor_token: 'eyJhbGciOiJFUzI1NiJ9.e30.sig',
      actor_token_type: TOKEN_TYPE_JWT,
    }),
    'actor_token is not accepted: this token has no workload binding',
  ),
  invalidExchange(
    'requested_token_type jwt with a jwt subject_token (federation straight into a JWT)',
    () => ({
      requested_token_type: TOKEN_TYPE_JWT,
      subject_token: 'eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2NpLmV4YW1wbGUifQ.sig',
      subject_token_type: TOKEN_TYPE_JWT,
    }),
    `requested_token_type jwt needs subject_token_type ${ACCESS}; federate first, then exchange the issued token for a JWT`,
  ),
  exchange(
    'requested_token_type jwt for a revoked token',
    () => ({ requested_token_type: TOKEN_TYPE_JWT, subject_token: f.revoked.secret }),
    unauthenticated('token has been revoked'),
    invalidRequest('token has been revoked'),
  ),
];

describeBadInput('The presented token and the RFC 8693 parameters', cases);
