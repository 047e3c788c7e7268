/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 3: an already-rotated token: the idempotent retry (same key, same successor and secret), the
 * reuse grace (FAILED_PRECONDITION naming the successor) and reuse detection (the whole family
 * revoked).
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, newKey, type Api, type Wire } from '../../support/rotor-api.js';
import { issuedSecrets, type TestServer } from '../../support/server.js';
import { withEngines } from '../../support/engines.js';
import {
  ACCESS_TOKEN,
  DEFAULT_GRACE_MS,
  RETRY_WINDOW_MS,
  MSG_ALREADY_ROTATED,
  MSG_REUSE,
  MSG_REVOKED_FOR_REUSE,
  ms,
  rotationRulesServer,
} from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, selfRotate, exchange, get, family, events, activeAsSeenByAdmin, expectFamilyRevokedForReuse } = rig;
  let s: TestServer;
  let api: Api;
  let admin: string;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ s, api, admin } = rig);
  });

  describe('rule 3: an already-rotated token (idempotent retry, reuse grace, reuse detection)', () => {
    it('the same idempotency key returns the same successor id and the same secret', async () => {
      const c = await newToken();
      const key = newKey();
      const first = await selfRotate(c.secret, { idempotencyKey: key });
      const again = await selfRotate(c.secret, { idempotencyKey: key });
      expect(first.secret).not.toBe(c.secret);
      expect(again.token!.id).toBe(first.token!.id);
      expect(again.secret).toBe(first.secret);
      expect(await family(c.familyId)).toHaveLength(2);
      // The replayed secret is the real one: it authenticates as the successor.
      expect((await api.introspectToken({ token: again.secret }, again.secret)).tokenId).toBe(first.token!.id);
      expect((await events(c.familyId)).filter((e) => e.type === 'rotated')).toHaveLength(1);
    });

    it('the same key still replays after the reuse grace, inside the retry window', async () => {
      const c = await newToken();
      const key = newKey();
      const first = await selfRotate(c.secret, { idempotencyKey: key });
      s.clock.advance(DEFAULT_GRACE_MS + 5_000);
      const again = await selfRotate(c.secret, { idempotencyKey: key });
      expect(again.token!.id).toBe(first.token!.id);
      expect(again.secret).toBe(first.secret);
      expect(await activeAsSeenByAdmin(first.secret)).toBe(true);
      expect(await family(c.familyId)).toHaveLength(2);
    });

    it('inside the reuse grace, presenting the predecessor is FAILED_PRECONDITION naming the successor; the family is untouched', async () => {
      const c = await newToken();
      const succ = await selfRotate(c.secret);
      for (const req of [{}, { idempotencyKey: newKey() }]) {
        const f = await failure(api.rotateToken(req, c.secret));
        expect(f.code).toBe(Code.FailedPrecondition);
        expect(f.rawMessage).toBe(MSG_ALREADY_ROTATED(succ.token!.id));
        expect(f.meta('rotor-successor-id')).toBe(succ.token!.id);
        expect(f.meta('rotor-error')).toBe('already_rotated');
      }
      expect(await activeAsSeenByAdmin(succ.secret)).toBe(true);
      expect((await get(succ.token!.id)).state).toBe(TokenState.ACTIVE);
      expect(await family(c.familyId)).toHaveLength(2);
      expect((await events(c.familyId)).some((e) => e.type === 'family_revoked')).toBe(false);
    });

    it('after the reuse grace, presenting the predecessor is PERMISSION_DENIED and revokes every token of the family', async () => {
      const c = await newToken();
      const succ = await selfRotate(c.secret);
      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const f = await failure(api.rotateToken({}, c.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      expect(f.meta('rotor-error')).toBe('reuse_detected');
      expect(f.meta('rotor-family-id')).toBe(c.familyId);
      await expectFamilyRevokedForReuse(c, [c.secret, succ.secret], c.id);
      // The successor no longer authenticates anything.
      const g = await failure(api.getToken({ id: succ.token!.id }, succ.secret));
      expect(g.code).toBe(Code.Unauthenticated);
      expect(g.rawMessage).toBe(`bearer ${MSG_REVOKED_FOR_REUSE((await get(succ.token!.id)).revokedAt)}`);
    });

    it('after reuse, the holder of the successor is told reuse was detected and when; the predecessor keeps its rotation time', async () => {
      const c = await newToken();
      const succ = await selfRotate(c.secret);
      const rotated = await get(c.id);
      expect(rotated.state).toBe(TokenState.ROTATED);
      expect(ms(rotated.rotatedAt)).toBe(ms(rotated.revokedAt));
      expect(succ.token!.rotatedAt).toBeUndefined();

      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      expect((await failure(api.rotateToken({}, c.secret))).code).toBe(Code.PermissionDenied);
      await expectFamilyRevokedForReuse(c, [c.secret, succ.secret], c.id);

      // GetToken and ListTokens: A is REVOKED for reuse at the family's revocation, and still says
      // when it was rotated; B was never rotated.
      const a = await get(c.id);
      const b = await get(succ.token!.id);
      expect(a.revokeReason).toBe('reuse_detected');
      expect(ms(a.rotatedAt)).toBe(ms(rotated.rotatedAt));
      expect(ms(a.revokedAt)).toBeGreaterThanOrEqual(ms(rotated.rotatedAt) + DEFAULT_GRACE_MS + 1_000);
      expect(ms(b.revokedAt)).toBe(ms(a.revokedAt));
      expect(b.rotatedAt).toBeUndefined();
      const listed = new Map((await family(c.familyId)).map((t) => [t.id, t]));
      expect(ms(listed.get(c.id)!.rotatedAt)).toBe(ms(rotated.rotatedAt));
      expect(listed.get(succ.token!.id)!.rotatedAt).toBeUndefined();

      // Presenting B (or A) anywhere: token_revoked naming reuse and the family's revocation time.
      const message = MSG_REVOKED_FOR_REUSE(b.revokedAt);
      for (const secret of [succ.secret, c.secret]) {
        // One call at a time: a call started before the previous one is awaited would reject unhandled.
        for (const call of [
          () => api.rotateToken({}, secret),
          () => api.getToken({ id: succ.token!.id }, secret),
          () => api.introspectToken({ token: secret }, secret),
        ]) {
          const f = await failure(call());
          expect([f.code, f.rawMessage]).toEqual([Code.Unauthenticated, `bearer ${message}`]);
        }
        const x = await failure(exchange(secret));
        expect([x.code, x.rawMessage, x.meta('rotor-error')]).toEqual([Code.Unauthenticated, message, 'token_revoked']);
      }
    });

    it('policy reuse_grace_seconds controls the grace window', async () => {
      const c = await newToken({ policy: { reuseGraceSeconds: 30n } });
      const succ = await selfRotate(c.secret);
      s.clock.advance(20_000);
      const inside = await failure(api.rotateToken({}, c.secret));
      expect(inside.code).toBe(Code.FailedPrecondition);
      expect(inside.rawMessage).toBe(MSG_ALREADY_ROTATED(succ.token!.id));
      expect(await activeAsSeenByAdmin(succ.secret)).toBe(true);
      s.clock.advance(11_000);
      const outside = await failure(api.rotateToken({}, c.secret));
      expect(outside.code).toBe(Code.PermissionDenied);
      expect(outside.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(c, [c.secret, succ.secret], c.id);
    });

    it('reuse_grace_seconds 0 makes any re-presentation reuse at once', async () => {
      const c = await newToken({ policy: { reuseGraceSeconds: 0n } });
      const succ = await selfRotate(c.secret);
      const f = await failure(api.rotateToken({}, c.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(c, [c.secret, succ.secret], c.id);
    });

    it('grace applies only to the immediate predecessor: A→B→C, presenting A inside the grace is reuse', async () => {
      const a = await newToken();
      const b = await selfRotate(a.secret);
      const cc = await selfRotate(b.secret);
      const f = await failure(api.rotateToken({}, a.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      expect(await family(a.familyId)).toHaveLength(3);
      await expectFamilyRevokedForReuse(a, [a.secret, b.secret, cc.secret], a.id);
    });

    it('replay applies only to the immediate predecessor: A→B (key k), B→C, A with key k is reuse', async () => {
      const a = await newToken();
      const key = newKey();
      const b = await selfRotate(a.secret, { idempotencyKey: key });
      const cc = await selfRotate(b.secret);
      const f = await failure(api.rotateToken({ idempotencyKey: key }, a.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(a, [a.secret, b.secret, cc.secret], a.id);
    });

    it('after the retry window, the same idempotency key is ordinary reuse', async () => {
      const c = await newToken();
      const key = newKey();
      const succ = await selfRotate(c.secret, { idempotencyKey: key });
      s.clock.advance(RETRY_WINDOW_MS - 5_000);
      expect((await selfRotate(c.secret, { idempotencyKey: key })).secret).toBe(succ.secret);
      s.clock.advance(6_000);
      const f = await failure(api.rotateToken({ idempotencyKey: key }, c.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(c, [c.secret, succ.secret], c.id);
    });

    it('ExchangeToken: same key → same successor and secret; inside grace FAILED_PRECONDITION; after grace reuse revokes the family', async () => {
      const c = await newToken();
      const key = newKey();
      const first = await exchange(c.secret, { idempotencyKey: key });
      expect(first.tokenType).toBe('Bearer');
      expect(first.issuedTokenType).toBe(ACCESS_TOKEN);
      expect(first.accessToken).toMatch(/^rtr_sa_/);
      const again = await exchange(c.secret, { idempotencyKey: key });
      expect(again.tokenId).toBe(first.tokenId);
      expect(again.accessToken).toBe(first.accessToken);
      expect(await family(c.familyId)).toHaveLength(2);

      const inside = await failure(exchange(c.secret));
      expect(inside.code).toBe(Code.FailedPrecondition);
      expect(inside.rawMessage).toBe(MSG_ALREADY_ROTATED(first.tokenId));
      expect(inside.meta('rotor-successor-id')).toBe(first.tokenId);
      expect(await activeAsSeenByAdmin(first.accessToken)).toBe(true);

      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const reuse = await failure(exchange(c.secret));
      expect(reuse.code).toBe(Code.PermissionDenied);
      expect(reuse.rawMessage).toBe(MSG_REUSE);
      expect(reuse.meta('rotor-family-id')).toBe(c.familyId);
      await expectFamilyRevokedForReuse(c, [c.secret, first.accessToken], c.id);
    });

    it('ExchangeToken and RotateToken share one rotation: a RotateToken retry with the exchange key replays', async () => {
      const c = await newToken();
      const key = newKey();
      const viaExchange = await exchange(c.secret, { idempotencyKey: key });
      const viaRotate = await selfRotate(c.secret, { idempotencyKey: key });
      expect(viaRotate.token!.id).toBe(viaExchange.tokenId);
      expect(viaRotate.secret).toBe(viaExchange.accessToken);
    });

    it('a malformed idempotency key is INVALID_ARGUMENT and rotates nothing', async () => {
      const c = await newToken();
      for (const bad of [
        'too-short',
        'has spaces in it!!!!!!!!',
        'x'.repeat(129),
        '0000004711',
        'Kq8xP2mZ7vB4nL9wR3tY6',
      ]) {
        const f = await failure(api.rotateToken({ idempotencyKey: bad }, c.secret));
        expect(f.code).toBe(Code.InvalidArgument);
        expect(f.rawMessage).toBe(
          "idempotency_key: must be 22-128 characters of A-Z a-z 0-9 _ - (at least 128 random bits, e.g. openssl rand -base64 24 | tr '+/' '-_')",
        );
      }
      for (const [bad, why] of [
        [
          '0123456789abcdef0123456789abcde',
          'a key of hex digits only must be at least 32 characters (128 random bits, e.g. openssl rand -hex 16)',
        ],
        [
          'a'.repeat(40),
          'does not look random (too few distinct characters); generate a new key for each rotation from a secure random source',
        ],
        [
          'abcdefghijklmnopqrstuvwxyzABCDEF',
          'does not look random (most characters follow their neighbour in sequence); generate a new key for each rotation from a secure random source',
        ],
      ] as const) {
        const f = await failure(api.rotateToken({ idempotencyKey: bad }, c.secret));
        expect(f.code).toBe(Code.InvalidArgument);
        expect(f.rawMessage).toBe(`idempotency_key: ${why}`);
      }
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);
    });

    it('an admin naming a superseded token by id gets FAILED_PRECONDITION (a stale request), never reuse', async () => {
      const c = await newToken();
      const succ = await api.rotateToken({ id: c.id }, admin);
      issuedSecrets.add(succ.secret);
      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const f = await failure(api.rotateToken({ id: c.id }, admin));
      expect(f.code).toBe(Code.FailedPrecondition);
      expect(f.rawMessage).toBe(MSG_ALREADY_ROTATED(succ.token!.id));
      expect(f.meta('rotor-successor-id')).toBe(succ.token!.id);
      expect(await activeAsSeenByAdmin(succ.secret)).toBe(true);
      expect((await events(c.familyId)).some((e) => e.type === 'family_revoked')).toBe(false);
    });
  });
});
