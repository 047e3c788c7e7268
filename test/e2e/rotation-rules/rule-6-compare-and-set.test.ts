/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 6: compare-and-set the predecessor, insert the successor and append the events in one
 * transaction; a lost race is answered by rule 3, never by a second successor.
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { RpcFailure, failure, type Api, type Wire } from '../../support/rotor-api.js';
import { issuedSecrets } from '../../support/server.js';
import { withEngines } from '../../support/engines.js';
import { MSG_ALREADY_ROTATED, MSG_OVERLAP_ENDED, rotationRulesServer } from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, selfRotate, get, family, events } = rig;
  let api: Api;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ api } = rig);
  });

  describe('rule 6: compare-and-set the predecessor, insert the successor, append events', () => {
    it('links predecessor and successor in one family and logs rotated + created', async () => {
      const c = await newToken();
      const res = await selfRotate(c.secret);
      const succ = res.token!;
      expect(res.secret).toMatch(/^rtr_sa_[0-9A-Za-z]{49}$/);
      expect(succ.previousId).toBe(c.id);
      expect(succ.familyId).toBe(c.familyId);
      expect(succ.state).toBe(TokenState.ACTIVE);
      const old = await get(c.id);
      expect(old.state).toBe(TokenState.ROTATED);
      expect(old.successorId).toBe(succ.id);
      expect(old.revokeReason).toBe('rotated');
      expect((await family(c.familyId)).map((t) => t.id).sort()).toEqual([c.id, succ.id].sort());
      const log = await events(c.familyId);
      expect(log.map((e) => [e.type, e.tokenId, e.successorId])).toEqual([
        ['created', c.id, null],
        ['rotated', c.id, succ.id],
        ['created', succ.id, null],
      ]);
      expect(log[1]!.actor).toBe(c.id);
      expect(log[1]!.sequence).toBeLessThan(log[2]!.sequence);
      // Overlap 0 (default): the old secret stops authenticating at once; the new one works.
      const f = await failure(api.getToken({ id: c.id }, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe(MSG_OVERLAP_ENDED);
      expect((await api.getToken({ id: succ.id }, res.secret)).token!.state).toBe(TokenState.ACTIVE);
    });

    it('concurrent rotations: a lost race is answered by rule 3, never by a second successor', async () => {
      const c = await newToken();
      const results = await Promise.allSettled(Array.from({ length: 10 }, () => api.rotateToken({}, c.secret)));
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      expect(ok).toHaveLength(1);
      const succId = ok[0]!.token!.id;
      issuedSecrets.add(ok[0]!.secret);
      expect(failed).toHaveLength(9);
      for (const e of failed) {
        expect(e).toBeInstanceOf(RpcFailure);
        expect((e as RpcFailure).code).toBe(Code.FailedPrecondition);
        expect((e as RpcFailure).rawMessage).toBe(MSG_ALREADY_ROTATED(succId));
      }
      const members = await family(c.familyId);
      expect(members).toHaveLength(2);
      expect(members.filter((t) => t.state === TokenState.ACTIVE).map((t) => t.id)).toEqual([succId]);
      expect((await events(c.familyId)).filter((e) => e.type === 'rotated')).toHaveLength(1);
    });
  });
});
