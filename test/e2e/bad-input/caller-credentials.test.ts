/**
 * docs/bad-input.md "Caller credentials, introspection and revocation": the caller's bearer token,
 * IntrospectToken and POST /oauth/introspect (RFC 7662), RevokeToken and POST /oauth/revoke
 * (RFC 7009). Every row of that section is one case here, in the same order; suite.ts runs them
 * against a real server on each engine and checks the rows against the doc.
 */
import { expect } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { describeBadInput } from './suite.js';
import { FORM, admin, f, formBody, onHttp, rpc, unauthenticated, type Case } from './support.js';

/** A well-formed JWT that no key of Rotor's signed. */
const FOREIGN_JWT = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Im5vLXN1Y2gta2lkIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

const cases: Case[] = [
  // ---- caller credentials ----
  {
    name: 'no bearer token',
    ...rpc(
      TokenService,
      'introspectToken',
      () => ({ token: f.unknown }),
      undefined,
      unauthenticated('missing bearer token'),
    ),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({ contentType: FORM, body: formBody({ token: f.live.secret }) })),
      expect: {
        status: 401,
        error: 'invalid_token',
        description: 'missing bearer token',
        header: ['www-authenticate', 'Bearer realm="rotor"'],
      },
    },
  },
  {
    name: 'malformed bearer token',
    ...rpc(
      TokenService,
      'introspectToken',
      () => ({ token: f.unknown }),
      () => f.malformed,
      unauthenticated('bearer token is malformed'),
    ),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({
        contentType: FORM,
        bearer: f.malformed,
        body: formBody({ token: f.live.secret }),
      })),
      expect: {
        status: 401,
        error: 'invalid_token',
        description: 'bearer token is malformed',
        header: ['www-authenticate', 'Bearer realm="rotor", error="invalid_token"'],
      },
    },
  },
  {
    name: 'expired bearer token',
    ...rpc(
      TokenService,
      'introspectToken',
      () => ({ token: f.unknown }),
      () => f.expired.secret,
      unauthenticated('bearer token has expired'),
    ),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({
        contentType: FORM,
        bearer: f.expired.secret,
        body: formBody({ token: f.live.secret }),
      })),
      expect: {
        status: 401,
        error: 'invalid_token',
        description: 'bearer token has expired',
        header: ['www-authenticate', 'Bearer realm="rotor", error="invalid_token"'],
      },
    },
  },
  {
    name: 'bearer token of a family revoked for reuse',
    ...rpc(
      TokenService,
      'introspectToken',
      () => ({ token: f.unknown }),
      () => f.reused.secret,
      unauthenticated('bearer token has been revoked: reuse detected at'),
    ),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({
        contentType: FORM,
        bearer: f.reused.secret,
        body: formBody({ token: f.reused.secret }),
      })),
      expect: {
        status: 401,
        error: 'invalid_token',
        description: 'bearer token has been revoked: reuse detected at',
        header: ['www-authenticate', 'Bearer realm="rotor", error="invalid_token"'],
      },
    },
  },
  {
    name: 'introspect an unknown token (admin caller)',
    ...rpc(TokenService, 'introspectToken', () => ({ token: f.unknown }), admin, {
      code: grpc.status.OK,
      message: '',
      response: (r) => expect(r.active).toBe(false),
      responseDoc: 'active=false',
    }),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({
        contentType: FORM,
        bearer: f.admin,
        body: formBody({ token: f.unknown }),
      })),
      expect: { status: 200, json: { active: false } },
    },
  },
  {
    name: 'introspect a JWT Rotor did not sign (admin caller)',
    ...rpc(TokenService, 'introspectToken', () => ({ token: FOREIGN_JWT }), admin, {
      code: grpc.status.OK,
      message: '',
      response: (r) => expect(r.active).toBe(false),
      responseDoc: 'active=false',
    }),
    http: {
      via: 'POST /oauth/introspect',
      send: onHttp('/oauth/introspect', () => ({
        contentType: FORM,
        bearer: f.admin,
        body: formBody({ token: FOREIGN_JWT }),
      })),
      expect: { status: 200, json: { active: false } },
    },
  },
  {
    name: 'revoke a JWT access token (RFC 7009 §2.2.1)',
    http: {
      via: 'POST /oauth/revoke',
      send: onHttp('/oauth/revoke', () => ({ contentType: FORM, body: formBody({ token: FOREIGN_JWT }) })),
      expect: { status: 400, error: 'unsupported_token_type', description: 'JWT access tokens cannot be revoked' },
    },
  },
  {
    name: 'revoke an unknown token',
    ...rpc(TokenService, 'revokeToken', () => ({ id: 'tok_doesNotExist' }), admin, {
      code: grpc.status.NOT_FOUND,
      message: 'token tok_doesNotExist not found',
    }),
    http: {
      via: 'POST /oauth/revoke',
      send: onHttp('/oauth/revoke', () => ({ contentType: FORM, body: formBody({ token: f.unknown }) })),
      expect: { status: 200, body: '' },
    },
  },
];

describeBadInput('Caller credentials, introspection and revocation', cases);
