/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 5: the successor's scopes and audiences narrow only; its expiry is the requested one, else
 * the policy default, else the issued lifetime, capped by the max lifetime.
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, type Api, type Wire } from '../../support/rotor-api.js';
import { inMs, type TestServer } from '../../support/server.js';
import { withEngines } from '../../support/engines.js';
import { DAY_MS, ms, rotationRulesServer } from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, selfRotate, exchange, get, family } = rig;
  let s: TestServer;
  let api: Api;
  let admin: string;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ s, api, admin } = rig);
  });

  describe('rule 5: successor scopes ⊆ current; expiry requested, else policy default, capped', () => {
    it('the successor inherits kind, owner, name, scopes, audiences and policy', async () => {
      const c = await newToken({ audiences: ['api.example'], policy: { overlapSeconds: 5n, reuseGraceSeconds: 20n } });
      const succ = (await selfRotate(c.secret)).token!;
      expect(succ.kind).toBe(TokenKind.SERVICE_ACCOUNT);
      expect(succ.ownerId).toBe('svc-deployer');
      expect(succ.name).toBe('deployer');
      expect(succ.scopes).toEqual(['rotor:rotate', 'read', 'write']);
      expect(succ.audiences).toEqual(['api.example']);
      expect(succ.policy?.overlapSeconds).toBe(5n);
      expect(succ.policy?.reuseGraceSeconds).toBe(20n);
      expect(succ.familyId).toBe(c.familyId);
      expect(succ.id).not.toBe(c.id);
    });

    it('requested scopes narrow the successor', async () => {
      const c = await newToken();
      const res = await selfRotate(c.secret, { scopes: ['read', 'rotor:rotate'] });
      expect(res.token!.scopes).toEqual(['read', 'rotor:rotate']);
      expect((await api.introspectToken({ token: res.secret }, admin)).scope).toBe('read rotor:rotate');
    });

    it('requesting a scope not held is refused with a clear error and rotates nothing', async () => {
      const c = await newToken();
      const f = await failure(api.rotateToken({ scopes: ['read', 'rotor:admin'] }, c.secret));
      expect(f.code).toBe(Code.InvalidArgument);
      expect(f.rawMessage).toBe('requested scopes exceed the scopes held: rotor:admin');
      expect(f.meta('rotor-error')).toBe('invalid_scope');
      const t = await get(c.id);
      expect(t.state).toBe(TokenState.ACTIVE);
      expect(t.successorId).toBe('');
      expect(await family(c.familyId)).toHaveLength(1);
    });

    it('a requested expiry is used as is', async () => {
      const c = await newToken();
      const want = s.clock.now() + 1_800_000;
      const res = await selfRotate(c.secret, { expiresAt: inMs(want, 0) });
      expect(ms(res.token!.expiresAt)).toBe(want);
    });

    it("without a requested expiry: the policy's default successor lifetime", async () => {
      const c = await newToken({ policy: { defaultLifetimeSeconds: 1800n } });
      const before = s.clock.now();
      const res = await selfRotate(c.secret);
      const after = s.clock.now();
      const exp = ms(res.token!.expiresAt);
      expect(exp).toBeGreaterThanOrEqual(before + 1_800_000);
      expect(exp).toBeLessThanOrEqual(after + 1_800_000);
    });

    it("without a policy default: the predecessor's issued lifetime, counted from the rotation", async () => {
      const c = await newToken({ lifetimeMs: 2 * 3_600_000 });
      // The issued lifetime as the server recorded it (its created_at is a little after the request was built).
      const issued = ms(c.token.expiresAt) - ms(c.token.createdAt);
      expect(issued).toBeGreaterThan(2 * 3_600_000 - 5_000);
      s.clock.advance(3_600_000);
      const before = s.clock.now();
      const res = await selfRotate(c.secret);
      const after = s.clock.now();
      const exp = ms(res.token!.expiresAt);
      expect(exp).toBeGreaterThanOrEqual(before + issued);
      expect(exp).toBeLessThanOrEqual(after + issued);
    });

    it('a requested expiry beyond the max lifetime, or in the past, is refused with a clear error', async () => {
      const c = await newToken({ lifetimeMs: 1_800_000, policy: { maxLifetimeSeconds: 3600n } });
      const tooLong = await failure(api.rotateToken({ expiresAt: inMs(s.clock.now(), 3_700_000) }, c.secret));
      expect(tooLong.code).toBe(Code.InvalidArgument);
      expect(tooLong.rawMessage).toBe('expires_at exceeds the max lifetime of 3600 seconds');
      const past = await failure(api.rotateToken({ expiresAt: inMs(s.clock.now(), -1_000) }, c.secret));
      expect(past.code).toBe(Code.InvalidArgument);
      expect(past.rawMessage).toBe('expires_at must be in the future');
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);
      expect(await family(c.familyId)).toHaveLength(1);
    });

    it('ExchangeToken: scope and audience narrow, never widen', async () => {
      const c = await newToken({ audiences: ['api.a', 'api.b'] });
      const escalate = await failure(exchange(c.secret, { scope: 'read rotor:admin' }));
      expect(escalate.code).toBe(Code.InvalidArgument);
      expect(escalate.rawMessage).toBe('requested scopes exceed the scopes held: rotor:admin');
      const widen = await failure(exchange(c.secret, { audience: ['api.c'] }));
      expect(widen.code).toBe(Code.InvalidArgument);
      expect(widen.rawMessage).toBe('audience not allowed for this token: api.c');
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);

      const res = await exchange(c.secret, { scope: 'read', audience: ['api.b'] });
      expect(res.scope).toBe('read');
      expect(res.expiresIn).toBeGreaterThan(BigInt(DAY_MS / 1000 - 60));
      expect(res.expiresIn).toBeLessThanOrEqual(BigInt(DAY_MS / 1000));
      const succ = await get(res.tokenId);
      expect(succ.scopes).toEqual(['read']);
      expect(succ.audiences).toEqual(['api.b']);
      expect(succ.previousId).toBe(c.id);

      // A token without audiences is unrestricted: any requested audience narrows it.
      const open = await newToken();
      const narrowed = await exchange(open.secret, { audience: ['api.z'] });
      expect((await get(narrowed.tokenId)).audiences).toEqual(['api.z']);
      const again = await failure(exchange(narrowed.accessToken, { audience: ['api.y'] }));
      expect(again.rawMessage).toBe('audience not allowed for this token: api.y');
    });
  });
});
