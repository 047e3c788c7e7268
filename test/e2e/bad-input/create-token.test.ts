/**
 * docs/bad-input.md "CreateToken": CreateToken on both ports: lifetimes, kinds, policies, field
 * sizes and characters, scope escalation, an oversized message. Every row of that section is one
 * case here, in the same order; suite.ts runs them against a real server on each engine and checks
 * the rows against the doc.
 */
import { Code } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind } from '../../../src/gen/rotor/v1/token_pb.js';
import { inMs } from '../../support/server.js';
import { describeBadInput } from './suite.js';
import {
  MAX_LIFETIME_SECONDS,
  PAST_MAX,
  KB100,
  SCOPE_SYNTAX,
  SEVENTEEN_AUDIENCES,
  LONG_AUDIENCE,
  admin,
  createRequest,
  f,
  invalidArgument,
  onConnect,
  onGrpc,
  rpc,
  s,
  type Case,
} from './support.js';

const cases: Case[] = [
  // ---- CreateToken ----
  {
    name: 'CreateToken expires_at past the max lifetime',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.expiresAt = inMs(s.clock.now(), PAST_MAX))),
      admin,
      invalidArgument(`expires_at exceeds the max lifetime of ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'CreateToken expires_at in the past',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.expiresAt = inMs(s.clock.now(), -60_000))),
      admin,
      invalidArgument('expires_at must be in the future'),
    ),
  },
  {
    name: 'CreateToken expires_at after year 9999',
    grpc: {
      send: onGrpc(
        TokenService,
        'createToken',
        createRequest((r) => (r.expiresAt = { seconds: 253402300800n, nanos: 0 })),
        admin,
      ),
      expect: invalidArgument('expires_at is out of range'),
    },
    // JSON cannot carry such a Timestamp (the Connect client refuses to encode it), so binary.
    connect: {
      via: 'Connect, application/proto',
      send: onConnect(
        TokenService,
        'createToken',
        createRequest((r) => (r.expiresAt = { seconds: 253402300800n, nanos: 0 })),
        admin,
        true,
      ),
      expect: invalidArgument('expires_at is out of range'),
    },
  },
  {
    name: 'CreateToken without expires_at',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => delete r.expiresAt),
      admin,
      invalidArgument('expires_at is required'),
    ),
  },
  {
    name: 'CreateToken kind UNSPECIFIED',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.kind = TokenKind.UNSPECIFIED)),
      admin,
      invalidArgument('kind must be one of'),
    ),
  },
  {
    name: 'CreateToken policy max lifetime above the server max',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.policy = { maxLifetimeSeconds: BigInt(MAX_LIFETIME_SECONDS + 1) })),
      admin,
      invalidArgument(`policy.max_lifetime_seconds must be between 0 and ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'CreateToken workload binding to an issuer the server does not trust',
    ...rpc(
      TokenService,
      'createToken',
      createRequest(
        (r) =>
          (r.policy = {
            workloadBinding: { issuer: 'https://ci.example', subject: 'repo:org/app:*', audience: 'rotor' },
          }),
      ),
      admin,
      invalidArgument('policy.workload_binding.issuer: is not a trusted issuer of this server'),
    ),
  },
  {
    name: 'CreateToken workload binding without a subject',
    ...rpc(
      TokenService,
      'createToken',
      createRequest(
        (r) => (r.policy = { workloadBinding: { issuer: 'https://ci.example', subject: '', audience: 'rotor' } }),
      ),
      admin,
      invalidArgument('policy.workload_binding.subject: is required'),
    ),
  },
  {
    name: 'CreateToken scope escalation by a non-admin (scope admin)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => {
        r.ownerId = 'bad-input';
        r.scopes = ['admin'];
      }),
      () => f.live.secret,
      invalidArgument('requested scopes exceed the scopes held: admin'),
    ),
  },
  {
    name: 'CreateToken name longer than 128',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.name = 'n'.repeat(129))),
      admin,
      invalidArgument('name: must be at most 128 characters'),
    ),
  },
  {
    name: 'CreateToken description longer than 1024',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.description = 'd'.repeat(1025))),
      admin,
      invalidArgument('description: must be at most 1024 characters'),
    ),
  },
  {
    name: 'CreateToken owner_id longer than 128',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.ownerId = 'o'.repeat(129))),
      admin,
      invalidArgument('owner_id: must be at most 128 characters'),
    ),
  },
  {
    name: 'CreateToken owner_id with a space',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.ownerId = 'bad input')),
      admin,
      invalidArgument('owner_id: must be printable characters without whitespace'),
    ),
  },
  {
    name: 'CreateToken kind out of the enum range (99)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.kind = 99)),
      admin,
      invalidArgument('kind must be one of PERSONAL, PROJECT, GROUP, SERVICE_ACCOUNT'),
    ),
  },
  {
    name: 'CreateToken more than 64 scopes (65)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = Array.from({ length: 65 }, (_, i) => `s${i}`))),
      admin,
      invalidArgument('scopes: at most 64 scopes'),
    ),
  },
  {
    name: 'CreateToken scope longer than 128 characters',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = ['read', 's'.repeat(129)])),
      admin,
      invalidArgument(SCOPE_SYNTAX('scopes')),
    ),
  },
  {
    name: 'CreateToken scope with a space (one scope "read write")',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = ['read write'])),
      admin,
      invalidArgument(SCOPE_SYNTAX('scopes')),
    ),
  },
  {
    name: 'CreateToken scope with a double quote',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = ['re"ad'])),
      admin,
      invalidArgument(SCOPE_SYNTAX('scopes')),
    ),
  },
  {
    name: 'CreateToken scope with a backslash',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.scopes = ['re\\ad'])),
      admin,
      invalidArgument(SCOPE_SYNTAX('scopes')),
    ),
  },
  {
    name: 'CreateToken more than 16 audiences (17)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.audiences = SEVENTEEN_AUDIENCES)),
      admin,
      invalidArgument('audiences: at most 16 values'),
    ),
  },
  {
    name: 'CreateToken audience longer than 256 characters',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.audiences = [LONG_AUDIENCE])),
      admin,
      invalidArgument('audiences: must be at most 256 characters'),
    ),
  },
  ...(['name', 'description'] as const).flatMap((field) =>
    [
      ['U+202E, right-to-left override', '\u202e'],
      ['U+009B, C1 control', '\u009b'],
    ].map(
      ([what, ch]): Case => ({
        name: `CreateToken ${field} containing ${what}`,
        ...rpc(
          TokenService,
          'createToken',
          createRequest((r) => (r[field] = `evil${ch}txt.exe`)),
          admin,
          invalidArgument(`${field}: must not contain control or format characters`),
        ),
      }),
    ),
  ),
  {
    name: 'CreateToken with a 100 KB description (100 KB request body)',
    ...rpc(
      TokenService,
      'createToken',
      createRequest((r) => (r.description = KB100)),
      admin,
      { code: grpc.status.RESOURCE_EXHAUSTED, message: 'Received message larger than max' },
      { code: Code.ResourceExhausted, message: 'message size is larger than configured readMaxBytes 65536' },
    ),
  },
];

describeBadInput('CreateToken', cases);
