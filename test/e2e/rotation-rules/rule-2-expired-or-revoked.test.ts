/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 2: an expired token, or one revoked for any reason other than rotation, is refused and no
 * successor is minted.
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, newKey, type Api, type Wire } from '../../support/rotor-api.js';
import type { TestServer } from '../../support/server.js';
import { withEngines } from '../../support/engines.js';
import { MSG_FAMILY_REVOKED, rotationRulesServer } from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, exchange, get, family } = rig;
  let s: TestServer;
  let api: Api;
  let admin: string;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ s, api, admin } = rig);
  });

  describe('rule 2: expired, or revoked other than by rotation → refused', () => {
    it('an expired token cannot rotate itself, and no successor is minted', async () => {
      const c = await newToken({ lifetimeMs: 60_000 });
      s.clock.advance(61_000);
      const f = await failure(api.rotateToken({}, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe('bearer token has expired');
      expect(await family(c.familyId)).toHaveLength(1);
      expect((await get(c.id)).state).toBe(TokenState.EXPIRED);
    });

    it('a revoked token cannot rotate itself (even with an idempotency key)', async () => {
      const c = await newToken();
      await api.revokeToken({ id: c.id }, admin);
      const f = await failure(api.rotateToken({ idempotencyKey: newKey() }, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe('bearer token has been revoked');
      expect(await family(c.familyId)).toHaveLength(1);
      expect((await get(c.id)).revokeReason).toBe('revoked');
    });

    it('a token of a revoked family cannot rotate itself', async () => {
      const c = await newToken();
      expect((await api.revokeFamily({ familyId: c.familyId }, admin)).revokedCount).toBe(1);
      const f = await failure(api.rotateToken({}, c.secret));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe(`bearer ${MSG_FAMILY_REVOKED((await get(c.id)).revokedAt)}`);
      const x = await failure(exchange(c.secret));
      expect([x.code, x.rawMessage]).toEqual([Code.Unauthenticated, MSG_FAMILY_REVOKED((await get(c.id)).revokedAt)]);
      expect(await family(c.familyId)).toHaveLength(1);
    });

    it('ExchangeToken refuses an expired or revoked subject_token', async () => {
      const expired = await newToken({ lifetimeMs: 30_000 });
      const revoked = await newToken();
      await api.revokeToken({ id: revoked.id }, admin);
      s.clock.advance(31_000);
      const e1 = await failure(exchange(expired.secret));
      expect(e1.code).toBe(Code.Unauthenticated);
      expect(e1.rawMessage).toBe('token has expired');
      const e2 = await failure(exchange(revoked.secret));
      expect(e2.code).toBe(Code.Unauthenticated);
      expect(e2.rawMessage).toBe('token has been revoked');
      expect(await family(expired.familyId)).toHaveLength(1);
      expect(await family(revoked.familyId)).toHaveLength(1);
    });
  });
});
