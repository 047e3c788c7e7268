/**
 * docs/bad-input.md "RotateToken": RotateToken by id, called by an admin on a live token, on both
 * ports. Every row of that section is one case here, in the same order; suite.ts runs them against
 * a real server on each engine and checks the rows against the doc.
 */
import * as grpc from '@grpc/grpc-js';
import { TokenService } from '../../../src/gen/rotor/v1/token_service_pb.js';
import { inMs } from '../../support/server.js';
import { describeBadInput } from './suite.js';
import { MAX_LIFETIME_SECONDS, PAST_MAX, admin, f, invalidArgument, rpc, s, type Case } from './support.js';

const cases: Case[] = [
  // ---- RotateToken (by id, as admin) ----
  {
    name: 'scope escalation on RotateToken (scopes read, delete)',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, scopes: ['read', 'delete'] }),
      admin,
      invalidArgument('requested scopes exceed the scopes held: delete'),
    ),
  },
  {
    name: 'RotateToken expires_at past the max lifetime',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, expiresAt: inMs(s.clock.now(), PAST_MAX) }),
      admin,
      invalidArgument(`expires_at exceeds the max lifetime of ${MAX_LIFETIME_SECONDS} seconds`),
    ),
  },
  {
    name: 'RotateToken expires_at in the past',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, expiresAt: inMs(s.clock.now(), -60_000) }),
      admin,
      invalidArgument('expires_at must be in the future'),
    ),
  },
  {
    name: 'RotateToken id that is not an id',
    ...rpc(TokenService, 'rotateToken', () => ({ id: 'not an id' }), admin, invalidArgument('id: is not a valid id')),
  },
  {
    name: 'RotateToken of an unknown id',
    ...rpc(TokenService, 'rotateToken', () => ({ id: 'tok_doesNotExist' }), admin, {
      code: grpc.status.NOT_FOUND,
      message: 'token tok_doesNotExist not found',
    }),
  },
  {
    name: 'RotateToken idempotency_key longer than 128 characters',
    ...rpc(
      TokenService,
      'rotateToken',
      () => ({ id: f.live.id, idempotencyKey: 'k'.repeat(129) }),
      admin,
      invalidArgument('idempotency_key: must be 22-128 characters'),
    ),
  },
];

describeBadInput('RotateToken', cases);
