import { Code, ConnectError } from '@connectrpc/connect';
import { describe, expect, it } from 'vitest';
import { AGENT_EXIT, AgentExit, finalError, judgeEvent, type AgentToken } from '../../src/cli/agent-verdicts.js';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { event } from '../support/fake-agent-server.js';

const token: AgentToken = {
  id: 'tok_me',
  familyId: 'fam_me',
  createdAt: 0,
  expiresAt: 3_600_000,
  state: TokenState.ACTIVE,
};
const F = '/run/token';

function exitOf(t: ReturnType<typeof judgeEvent>): [number, string] | string | undefined {
  if (!t) return undefined;
  return t.kind === 'exit' ? [t.exit.code, t.exit.message] : t.kind;
}

describe('what an event means to the agent', () => {
  it.each([
    [
      'EXPIRING_SOON shorter than the lifetime',
      event(ExpiryEventType.EXPIRING_SOON, { sequence: 1, tokenId: 'tok_me', thresholdMs: 60_000 }),
      'rotate',
    ],
    [
      'EXPIRING_SOON as long as the lifetime (due at birth)',
      event(ExpiryEventType.EXPIRING_SOON, { sequence: 1, tokenId: 'tok_me', thresholdMs: 3_600_000 }),
      undefined,
    ],
    [
      'an event of another token',
      event(ExpiryEventType.EXPIRING_SOON, { sequence: 1, tokenId: 'tok_other', thresholdMs: 60_000 }),
      undefined,
    ],
    ['HEARTBEAT', event(ExpiryEventType.HEARTBEAT, { sequence: 1 }), undefined],
    [
      'SNAPSHOT active',
      event(ExpiryEventType.SNAPSHOT, { sequence: 1, tokenId: 'tok_me', state: TokenState.ACTIVE }),
      undefined,
    ],
    [
      'SNAPSHOT revoked',
      event(ExpiryEventType.SNAPSHOT, { sequence: 1, tokenId: 'tok_me', state: TokenState.REVOKED }),
      [AGENT_EXIT.revoked, 'token tok_me was revoked; issue a new token'],
    ],
    [
      'SNAPSHOT expired',
      event(ExpiryEventType.SNAPSHOT, { sequence: 1, tokenId: 'tok_me', state: TokenState.EXPIRED }),
      [AGENT_EXIT.revoked, 'token tok_me has expired; issue a new token'],
    ],
    [
      'EXPIRED',
      event(ExpiryEventType.EXPIRED, { sequence: 1, tokenId: 'tok_me' }),
      [AGENT_EXIT.revoked, 'token tok_me expired before it could be rotated; issue a new token'],
    ],
    [
      'REVOKED',
      event(ExpiryEventType.REVOKED, { sequence: 1, tokenId: 'tok_me', reason: 'revoked' }),
      [AGENT_EXIT.revoked, 'token tok_me was revoked (revoked); issue a new token'],
    ],
    [
      'FAMILY_REVOKED of its family, any member',
      event(ExpiryEventType.FAMILY_REVOKED, {
        sequence: 1,
        tokenId: 'tok_old',
        familyId: 'fam_me',
        reason: 'reuse_detected',
      }),
      [AGENT_EXIT.revoked, `family fam_me was revoked (reuse_detected): the token in ${F} is dead; issue a new token`],
    ],
    [
      'FAMILY_REVOKED of another family',
      event(ExpiryEventType.FAMILY_REVOKED, { sequence: 1, tokenId: 'tok_x', familyId: 'fam_x' }),
      undefined,
    ],
  ])('%s', (_name, e, expected) => {
    expect(exitOf(judgeEvent(e, token, F))).toEqual(expected);
  });

  it('ROTATED by someone else is exit 4 naming the successor', () => {
    const r = exitOf(
      judgeEvent(event(ExpiryEventType.ROTATED, { sequence: 1, tokenId: 'tok_me', successorId: 'tok_next' }), token, F),
    ) as [number, string];
    expect(r[0]).toBe(AGENT_EXIT.rotatedElsewhere);
    expect(r[1]).toMatch(
      /^token tok_me was rotated by another client \(successor tok_next\); only that client received the successor's secret/,
    );
  });
});

describe('what a final server answer means to the agent', () => {
  const withMeta = (message: string, code: Code, meta: Record<string, string>) => {
    const e = new ConnectError(message, code);
    for (const [k, v] of Object.entries(meta)) e.metadata.set(k, v);
    return e;
  };

  it.each([
    [
      withMeta(
        'token was already rotated: reuse detected, every token of its family is now revoked',
        Code.PermissionDenied,
        { 'rotor-error': 'reuse_detected' },
      ),
      AGENT_EXIT.revoked,
      /^family revoked: /,
    ],
    [
      withMeta('token was already rotated; its successor is tok_b', Code.FailedPrecondition, {
        'rotor-error': 'already_rotated',
        'rotor-successor-id': 'tok_b',
      }),
      AGENT_EXIT.rotatedElsewhere,
      /^the token in \/run\/token was rotated by another client \(successor tok_b\)/,
    ],
    [
      new ConnectError('bearer token has expired', Code.Unauthenticated),
      AGENT_EXIT.revoked,
      /^the token in \/run\/token no longer authenticates \(bearer token has expired\)/,
    ],
    [
      withMeta('token tok_a has been revoked and cannot be rotated', Code.FailedPrecondition, {
        'rotor-error': 'not_rotatable',
      }),
      AGENT_EXIT.revoked,
      /^rotating: token tok_a has been revoked/,
    ],
    [
      new ConnectError('rotating your own token needs rotor:rotate', Code.PermissionDenied),
      AGENT_EXIT.error,
      /needs the rotor:rotate scope/,
    ],
    [new ConnectError('bad', Code.InvalidArgument), AGENT_EXIT.error, /^rotating: InvalidArgument: bad$/],
  ])('%s', (e, code, message) => {
    const r = finalError(F, e, 'rotating');
    expect(r).toBeInstanceOf(AgentExit);
    expect((r as AgentExit).code).toBe(code);
    expect(r.message).toMatch(message);
  });
});

describe('a refused workload proof (bound token) is exit 6 with what to fix', () => {
  const refusal = (message: string, code: Code, domain: string) => {
    const e = new ConnectError(message, code);
    e.metadata.set('rotor-error', domain);
    return e;
  };

  it.each([
    [
      refusal(
        'this token is bound to a workload: rotating it needs actor_token …',
        Code.Unauthenticated,
        'workload_proof_required',
      ),
      undefined,
      /^the token in \/run\/token is bound to a workload: rotating it needs the workload's JWT\. Start the agent with --actor-token-file/,
    ],
    [
      refusal(
        'this token is bound to a workload: rotating it needs actor_token …',
        Code.Unauthenticated,
        'workload_proof_required',
      ),
      '/var/run/id_token',
      /^the token in \/run\/token is bound to a workload and the server received no workload JWT .*check that \/var\/run\/id_token holds the JWT$/,
    ],
    [
      refusal('actor_token has expired (exp)', Code.Unauthenticated, 'invalid_workload_token'),
      '/var/run/id_token',
      /^the server refused the workload JWT in \/var\/run\/id_token \(actor_token has expired \(exp\)\): the file must hold a current JWT/,
    ],
    [
      refusal(
        "actor_token does not match the token's workload binding: subject",
        Code.PermissionDenied,
        'workload_mismatch',
      ),
      '/var/run/id_token',
      /^the workload JWT in \/var\/run\/id_token is not the workload the token in \/run\/token is bound to \(actor_token does not match the token's workload binding: subject\)/,
    ],
  ])('%s', (e, actorFile, message) => {
    const r = finalError(F, e, 'rotating', actorFile);
    expect(r).toBeInstanceOf(AgentExit);
    expect((r as AgentExit).code).toBe(AGENT_EXIT.workloadProof);
    expect((r as AgentExit).code).toBe(6);
    expect(r.message).toMatch(message);
  });
});
