/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 7: with overlap > 0 the predecessor authenticates ordinary calls until min(expires_at,
 * rotated_at + overlap), cut short when its successor rotates; it is never rotated again.
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, type Api, type Wire } from '../../support/rotor-api.js';
import type { TestServer } from '../../support/server.js';
import { withEngines } from '../../support/engines.js';
import {
  MSG_ALREADY_ROTATED,
  MSG_OVERLAP_ENDED,
  MSG_REUSE,
  MSG_REVOKED_FOR_REUSE,
  rotationRulesServer,
} from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, selfRotate, exchange, get, activeAsSeenByAdmin, expectFamilyRevokedForReuse } = rig;
  let s: TestServer;
  let api: Api;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ s, api } = rig);
  });

  describe('rule 7: with overlap > 0 the predecessor authenticates until min(expires_at, rotated_at + overlap); never rotated again', () => {
    it('the old secret keeps authenticating ordinary calls until the overlap ends', async () => {
      const c = await newToken({ policy: { overlapSeconds: 60n } });
      const res = await selfRotate(c.secret);
      const self = await api.introspectToken({ token: c.secret }, c.secret);
      expect(self.active).toBe(true);
      expect(self.tokenId).toBe(c.id);
      const viaOld = (await api.getToken({ id: c.id }, c.secret)).token!;
      expect(viaOld.state).toBe(TokenState.ROTATED);
      expect(viaOld.successorId).toBe(res.token!.id);
      expect(await activeAsSeenByAdmin(c.secret)).toBe(true);

      // The clock also runs for real: 55 s leaves the calls since the rotation 5 s of the window.
      s.clock.advance(55_000);
      expect((await api.introspectToken({ token: c.secret }, c.secret)).active).toBe(true);
      expect((await api.getToken({ id: res.token!.id }, c.secret)).token!.state).toBe(TokenState.ACTIVE);

      s.clock.advance(6_000);
      const f = await failure(api.introspectToken({ token: c.secret }, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe(MSG_OVERLAP_ENDED);
      const g = await failure(api.getToken({ id: c.id }, c.secret));
      expect(g.code).toBe(Code.Unauthenticated);
      expect(g.rawMessage).toBe(MSG_OVERLAP_ENDED);
      expect(await activeAsSeenByAdmin(c.secret)).toBe(false);
      // The successor is unaffected.
      expect(await activeAsSeenByAdmin(res.secret)).toBe(true);
    });

    it('inside the overlap the predecessor can never be rotated again: FAILED_PRECONDITION in the grace, reuse after it', async () => {
      const c = await newToken({ policy: { overlapSeconds: 60n } });
      const res = await selfRotate(c.secret);
      const inGrace = await failure(api.rotateToken({}, c.secret));
      expect(inGrace.code).toBe(Code.FailedPrecondition);
      expect(inGrace.rawMessage).toBe(MSG_ALREADY_ROTATED(res.token!.id));
      expect(inGrace.meta('rotor-successor-id')).toBe(res.token!.id);

      s.clock.advance(20_000);
      // Still inside the overlap: ordinary calls work ...
      expect((await api.introspectToken({ token: c.secret }, c.secret)).active).toBe(true);
      // ... but rotating it again is reuse.
      const reuse = await failure(api.rotateToken({}, c.secret));
      expect(reuse.code).toBe(Code.PermissionDenied);
      expect(reuse.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(c, [c.secret, res.secret], c.id);
      const after = await failure(api.introspectToken({ token: c.secret }, c.secret));
      expect(after.code).toBe(Code.Unauthenticated);
      expect(after.rawMessage).toBe(`bearer ${MSG_REVOKED_FOR_REUSE((await get(c.id)).revokedAt)}`);
    });

    it('the overlap never outlives the predecessor’s own expiry', async () => {
      const c = await newToken({ lifetimeMs: 30_000, policy: { overlapSeconds: 60n, defaultLifetimeSeconds: 3600n } });
      const res = await selfRotate(c.secret);
      s.clock.advance(25_000);
      expect((await api.introspectToken({ token: c.secret }, c.secret)).active).toBe(true);
      s.clock.advance(6_000);
      const f = await failure(api.introspectToken({ token: c.secret }, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe(MSG_OVERLAP_ENDED);
      expect(await activeAsSeenByAdmin(res.secret)).toBe(true);
    });

    it('ExchangeToken honours the overlap the same way', async () => {
      const c = await newToken({ policy: { overlapSeconds: 60n } });
      const res = await exchange(c.secret);
      expect((await api.getToken({ id: res.tokenId }, c.secret)).token!.previousId).toBe(c.id);
      s.clock.advance(61_000);
      const f = await failure(api.getToken({ id: res.tokenId }, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe(MSG_OVERLAP_ENDED);
    });

    // docs/rotation.md rule 7: a family has at most one predecessor inside its overlap window, so
    // rotating B→C ends the overlap of A (rotated A→B seconds ago) before its own rotated_at + overlap.
    it('at most one predecessor inside its overlap window: rotating the successor ends the older overlap', async () => {
      const a = await newToken({ policy: { overlapSeconds: 60n } });
      const b = await selfRotate(a.secret);
      await selfRotate(b.secret);
      expect((await api.introspectToken({ token: b.secret }, b.secret)).active).toBe(true);
      const f = await failure(api.introspectToken({ token: a.secret }, a.secret));
      expect(f.code).toBe(Code.Unauthenticated);
    });
  });
});
