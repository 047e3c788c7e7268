/**
 * src/domain/authorization.ts end to end, plus the review findings it closed: who may view,
 * manage, rotate by id and create which token; revocation cannot switch reuse detection off;
 * bootstrap refuses while an admin exists; text fields refuse control and format characters.
 *
 * Real server, real clients: plain @grpc/grpc-js on the gRPC port for every scenario, the Connect
 * client on the HTTP port for the authorization rules, and `fetch` for RFC 7009 /oauth/revoke.
 * Every refusal asserts the exact code and message, and that nothing changed.
 */
import { timestampMs, type Timestamp } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import { rotorErrorOf } from '../support/errors.js';
import { TokenKind, TokenState, type Token } from '../../src/gen/rotor/v1/token_pb.js';
import type { CreateTokenRequestSchema } from '../../src/gen/rotor/v1/token_service_pb.js';
import { connectApi, failure, grpcApi, type Api, type Req, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES, withEngines } from '../support/engines.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Server default reuse grace (src/domain/policy.ts DEFAULT_LIMITS). */
const DEFAULT_GRACE_MS = 10_000;

const MSG_LACKS_SCOPES = (missing: string) => `caller lacks scopes of the target token: ${missing}`;
const MSG_NEEDS_ROTATE = 'rotating a token needs the rotor:rotate scope';
const MSG_OTHER_OWNER = 'caller may not access tokens of this owner';
const MSG_REUSE = 'token was already rotated: reuse detected, every token of its family is now revoked';
const MSG_OVERLAP_ENDED = 'bearer token has been rotated and its overlap window has ended';
const MSG_REVOKED = 'bearer token has been revoked';
const MSG_CONTROL = 'description: must not contain control or format characters';
const MSG_BOOTSTRAP_REFUSED = 'an active admin token already exists; bootstrap refused';

function ms(ts: Timestamp | undefined): number {
  if (ts === undefined) throw new Error('timestamp is unset');
  return timestampMs(ts);
}

type PolicyInit = NonNullable<Req<typeof CreateTokenRequestSchema>['policy']>;
/** The CreateToken fields a case may widen. */
interface CreateOverrides {
  ownerId?: string;
  scopes?: string[];
  audiences?: string[];
  expiresAt?: Timestamp;
  policy?: PolicyInit;
}

interface Created {
  token: Token;
  id: string;
  familyId: string;
  secret: string;
}

/** The helpers every scenario uses, bound to one server and one transport. */
function fixtures(getServer: () => TestServer, getApi: () => Api) {
  let owners = 0;
  return {
    /** A fresh owner id, so ListTokens of it holds only what the test created. */
    owner(prefix = 'team'): string {
      return `${prefix}-${++owners}`;
    },
    /** Created by the harness admin. */
    async create(
      ownerId: string,
      opts: { scopes: string[]; audiences?: string[]; lifetimeMs?: number; policy?: PolicyInit; name?: string },
    ): Promise<Created> {
      const s = getServer();
      const res = await getApi().createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId,
          name: opts.name ?? 'deployer',
          scopes: opts.scopes,
          audiences: opts.audiences ?? [],
          expiresAt: inMs(s.clock.now(), opts.lifetimeMs ?? DAY_MS),
          policy: opts.policy ?? {},
        },
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      const token = res.token!;
      return { token, id: token.id, familyId: token.familyId, secret: res.secret };
    },
    /** As the harness admin sees it. */
    async get(id: string): Promise<Token> {
      return (await getApi().getToken({ id }, getServer().adminSecret)).token!;
    },
    async ofOwner(ownerId: string): Promise<Token[]> {
      return (await getApi().listTokens({ ownerId, pageSize: 100 }, getServer().adminSecret)).tokens;
    },
    async family(familyId: string): Promise<Token[]> {
      return (await getApi().listTokens({ familyId, pageSize: 100 }, getServer().adminSecret)).tokens;
    },
    async active(secret: string): Promise<boolean> {
      return (await getApi().introspectToken({ token: secret }, getServer().adminSecret)).active;
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe.each(withEngines<Wire>(['grpc', 'connect']))('authorization rules over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;
  const f = fixtures(
    () => s,
    () => api,
  );

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
  });
  afterAll(async () => {
    api.close();
    await s.stop();
  });

  /** The target is untouched: still active, still alone in its family, its secret still works. */
  async function expectUntouched(target: Created) {
    const t = await f.get(target.id);
    expect(t.state).toBe(TokenState.ACTIVE);
    expect(t.successorId).toBe('');
    expect(t.revokeReason).toBe('');
    expect((await f.family(target.familyId)).map((m) => m.id)).toEqual([target.id]);
    expect(await f.active(target.secret)).toBe(true);
  }

  // -------------------------------------------------------------------------------------------
  describe('managing (rotate by id, revoke, revoke family) needs every scope of the target', () => {
    it.each([
      ['a wider sibling', ['read', 'write', 'rotor:rotate'], 'write rotor:rotate'],
      ['an admin-scoped token of the same owner', ['rotor:admin', 'read'], 'rotor:admin'],
    ])(
      'a read-only token cannot rotate, revoke or revoke the family of %s; the target stays active',
      async (_label, scopes, missing) => {
        const owner = f.owner();
        const wide = await f.create(owner, { scopes });
        const narrow = await f.create(owner, { scopes: ['read'], name: 'reader' });

        const rotate = await failure(api.rotateToken({ id: wide.id }, narrow.secret));
        expect(rotate.code).toBe(Code.PermissionDenied);
        expect(rotate.rawMessage).toBe(MSG_LACKS_SCOPES(missing));

        const revoke = await failure(api.revokeToken({ id: wide.id }, narrow.secret));
        expect(revoke.code).toBe(Code.PermissionDenied);
        expect(revoke.rawMessage).toBe(MSG_LACKS_SCOPES(missing));

        const revokeFamily = await failure(api.revokeFamily({ familyId: wide.familyId }, narrow.secret));
        expect(revokeFamily.code).toBe(Code.PermissionDenied);
        expect(revokeFamily.rawMessage).toBe(MSG_LACKS_SCOPES(missing));

        await expectUntouched(wide);
        expect((await s.rotor.store.events.list({ tokenId: wide.id }, 100)).map((e) => e.type)).toEqual(['created']);
      },
    );

    it('the read-only token still views its owner’s tokens (GetToken, ListTokens), never another owner’s', async () => {
      const owner = f.owner();
      const wide = await f.create(owner, { scopes: ['read', 'write', 'rotor:rotate'] });
      const narrow = await f.create(owner, { scopes: ['read'], name: 'reader' });
      const stranger = await f.create(f.owner('other'), { scopes: ['read'] });

      const seen = (await api.getToken({ id: wide.id }, narrow.secret)).token!;
      expect(seen.id).toBe(wide.id);
      expect(seen.scopes).toEqual(['read', 'write', 'rotor:rotate']);
      expect(seen.state).toBe(TokenState.ACTIVE);

      const listed = (await api.listTokens({ pageSize: 100 }, narrow.secret)).tokens.map((t) => t.id).sort();
      expect(listed).toEqual([wide.id, narrow.id].sort());
      const byOwner = (await api.listTokens({ ownerId: owner, pageSize: 100 }, narrow.secret)).tokens
        .map((t) => t.id)
        .sort();
      expect(byOwner).toEqual([wide.id, narrow.id].sort());

      const other = await failure(api.getToken({ id: stranger.id }, narrow.secret));
      expect(other.code).toBe(Code.PermissionDenied);
      expect(other.rawMessage).toBe(MSG_OTHER_OWNER);
      const otherList = await failure(api.listTokens({ ownerId: stranger.token.ownerId }, narrow.secret));
      expect(otherList.code).toBe(Code.PermissionDenied);
      expect(otherList.rawMessage).toBe(MSG_OTHER_OWNER);
    });

    it('holding every scope of the target, an owner token may revoke it and its family (the refusals above are about scopes)', async () => {
      const owner = f.owner();
      const manager = await f.create(owner, { scopes: ['read', 'write'] });
      const one = await f.create(owner, { scopes: ['read'] });
      const two = await f.create(owner, { scopes: ['write', 'read'] });

      const revoked = (await api.revokeToken({ id: one.id }, manager.secret)).token!;
      expect(revoked.state).toBe(TokenState.REVOKED);
      expect(revoked.revokeReason).toBe('revoked');
      expect((await api.revokeFamily({ familyId: two.familyId }, manager.secret)).revokedCount).toBe(1);
      expect((await f.get(two.id)).revokeReason).toBe('family_revoked');
      expect(await f.active(one.secret)).toBe(false);
      expect(await f.active(two.secret)).toBe(false);
      // Another owner's token is out of reach even with every scope.
      const stranger = await f.create(f.owner('other'), { scopes: ['read'] });
      const g = await failure(api.revokeToken({ id: stranger.id }, manager.secret));
      expect(g.code).toBe(Code.PermissionDenied);
      expect(g.rawMessage).toBe(MSG_OTHER_OWNER);
      await expectUntouched(stranger);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('rotation by id needs rotor:rotate, like self-rotation', () => {
    it('holding every scope of the target but not rotor:rotate: PERMISSION_DENIED for its own id and for a sibling', async () => {
      const owner = f.owner();
      const caller = await f.create(owner, { scopes: ['read', 'write'] });
      const sibling = await f.create(owner, { scopes: ['read', 'write'], name: 'sibling' });

      for (const target of [caller, sibling]) {
        const r = await failure(api.rotateToken({ id: target.id }, caller.secret));
        expect(r.code).toBe(Code.PermissionDenied);
        expect(r.rawMessage).toBe(MSG_NEEDS_ROTATE);
        await expectUntouched(target);
      }
      // Managing without rotating is still allowed: the refusal is about rotor:rotate alone.
      expect((await api.revokeToken({ id: sibling.id }, caller.secret)).token!.state).toBe(TokenState.REVOKED);
    });

    it('with rotor:rotate and every scope of the target, rotates a sibling by id and receives the successor', async () => {
      const owner = f.owner();
      const caller = await f.create(owner, { scopes: ['read', 'write', 'rotor:rotate'] });
      const sibling = await f.create(owner, { scopes: ['read', 'write'], audiences: ['api.a'], name: 'sibling' });

      const res = await api.rotateToken({ id: sibling.id }, caller.secret);
      issuedSecrets.add(res.secret);
      const succ = res.token!;
      expect(succ.previousId).toBe(sibling.id);
      expect(succ.familyId).toBe(sibling.familyId);
      expect(succ.ownerId).toBe(owner);
      expect(succ.name).toBe('sibling');
      expect(succ.scopes).toEqual(['read', 'write']);
      expect(succ.audiences).toEqual(['api.a']);
      expect(succ.state).toBe(TokenState.ACTIVE);
      expect(res.secret).toMatch(/^rtr_sa_[0-9A-Za-z]{49}$/);

      // The returned secret is the successor's and works; the sibling is superseded.
      expect((await api.getToken({ id: succ.id }, res.secret)).token!.id).toBe(succ.id);
      const old = await f.get(sibling.id);
      expect(old.state).toBe(TokenState.ROTATED);
      expect(old.successorId).toBe(succ.id);
      const stale = await failure(api.getToken({ id: sibling.id }, sibling.secret));
      expect(stale.code).toBe(Code.Unauthenticated);
      expect(stale.rawMessage).toBe(MSG_OVERLAP_ENDED);
      // The audit log names the caller, not the rotated token.
      const rotated = (await s.rotor.store.events.list({ tokenId: sibling.id }, 100)).filter(
        (e) => e.type === 'rotated',
      );
      expect(rotated.map((e) => [e.successorId, e.actor])).toEqual([[succ.id, caller.id]]);
      // The caller itself is unaffected.
      expect(await f.active(caller.secret)).toBe(true);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('a non-admin creates nothing looser than itself; an admin is not limited', () => {
    let owner: string;
    let caller: Created;
    let callerExpiry: number;

    /** Narrower than the caller in every respect: accepted. Each case widens one field. */
    function request(over: CreateOverrides = {}): Req<typeof CreateTokenRequestSchema> {
      return {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: owner,
        name: 'child',
        scopes: ['read'],
        audiences: ['api.a'],
        expiresAt: inMs(s.clock.now(), HOUR_MS),
        policy: { overlapSeconds: 10n },
        ...over,
      };
    }

    beforeAll(async () => {
      owner = f.owner('creator');
      caller = await f.create(owner, {
        scopes: ['read', 'write'],
        audiences: ['api.a', 'api.b'],
        lifetimeMs: DAY_MS,
        policy: { overlapSeconds: 30n },
      });
      callerExpiry = ms(caller.token.expiresAt);
    });

    it.each<[string, () => CreateOverrides, Code, string, string]>([
      [
        'another owner',
        () => ({ ownerId: 'someone-else' }),
        Code.PermissionDenied,
        MSG_OTHER_OWNER,
        'permission_denied',
      ],
      [
        'a scope it lacks',
        () => ({ scopes: ['read', 'deploy'] }),
        Code.InvalidArgument,
        'requested scopes exceed the scopes held: deploy',
        'invalid_scope',
      ],
      [
        'the admin scope',
        () => ({ scopes: ['rotor:admin'] }),
        Code.InvalidArgument,
        'requested scopes exceed the scopes held: rotor:admin',
        'invalid_scope',
      ],
      [
        'an audience outside its own',
        () => ({ audiences: ['api.a', 'api.c'] }),
        Code.InvalidArgument,
        "audiences exceed the caller's: api.c",
        'invalid_target',
      ],
      [
        'no audience (unrestricted) from an audience-bound caller',
        () => ({ audiences: [] }),
        Code.InvalidArgument,
        "audiences exceed the caller's: (unrestricted)",
        'invalid_target',
      ],
      [
        'an expiry after its own',
        () => ({ expiresAt: inMs(callerExpiry, 60_000) }),
        Code.InvalidArgument,
        'expires_at must not be later than the expiry of the calling token',
        'invalid_argument',
      ],
      [
        'a longer overlap',
        () => ({ policy: { overlapSeconds: 31n } }),
        Code.InvalidArgument,
        "policy must not be looser than the calling token's: overlap_seconds",
        'invalid_argument',
      ],
      [
        'a longer reuse grace and overlap',
        () => ({ policy: { overlapSeconds: 3600n, reuseGraceSeconds: 60n } }),
        Code.InvalidArgument,
        "policy must not be looser than the calling token's: overlap_seconds, reuse_grace_seconds",
        'invalid_argument',
      ],
    ])('refuses %s and creates nothing', async (_label, widen, code, message, rotorError) => {
      const before = (await f.ofOwner(owner)).length;
      const r = await failure(api.createToken(request(widen()), caller.secret));
      expect(r.code).toBe(code);
      expect(r.rawMessage).toBe(message);
      expect(r.meta('rotor-error')).toBe(rotorError);
      expect(await f.ofOwner(owner)).toHaveLength(before);
      expect(await f.ofOwner('someone-else')).toHaveLength(0);
    });

    it('accepts a request no looser than the caller, exactly as asked', async () => {
      const exp = callerExpiry - 1_000;
      const res = await api.createToken(
        request({
          audiences: ['api.b'],
          expiresAt: inMs(exp, 0),
          policy: { overlapSeconds: 30n, reuseGraceSeconds: 5n },
        }),
        caller.secret,
      );
      issuedSecrets.add(res.secret);
      const t = res.token!;
      expect(t.ownerId).toBe(owner);
      expect(t.scopes).toEqual(['read']);
      expect(t.audiences).toEqual(['api.b']);
      expect(ms(t.expiresAt)).toBe(exp);
      expect(t.policy?.overlapSeconds).toBe(30n);
      expect(t.policy?.reuseGraceSeconds).toBe(5n);
      expect(t.previousId).toBe('');
      expect(t.familyId).not.toBe(caller.familyId);
      expect((await s.rotor.store.events.list({ tokenId: t.id }, 10)).map((e) => [e.type, e.actor])).toEqual([
        ['created', caller.id],
      ]);
    });

    it('an admin may create what the caller may not: other owner, wider scopes, unrestricted audiences, later expiry, looser policy', async () => {
      const other = f.owner('admin-made');
      const exp = callerExpiry + 30 * DAY_MS;
      const res = await api.createToken(
        request({
          ownerId: other,
          scopes: ['read', 'write', 'deploy', 'rotor:rotate'],
          audiences: [],
          expiresAt: inMs(exp, 0),
          policy: { overlapSeconds: 3600n, reuseGraceSeconds: 60n },
        }),
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      const t = res.token!;
      expect(t.ownerId).toBe(other);
      expect(t.scopes).toEqual(['read', 'write', 'deploy', 'rotor:rotate']);
      expect(t.audiences).toEqual([]);
      expect(ms(t.expiresAt)).toBe(exp);
      expect(t.policy?.overlapSeconds).toBe(3600n);
      expect(t.policy?.reuseGraceSeconds).toBe(60n);
    });
  });

  // -------------------------------------------------------------------------------------------
  describe('text fields refuse control and format characters', () => {
    it.each([
      ['U+202E RIGHT-TO-LEFT OVERRIDE', 'deploy key \u202Egnp.exe'],
      ['U+009B CONTROL SEQUENCE INTRODUCER', 'deploy key \u009B31mred'],
      ['U+200B ZERO WIDTH SPACE', 'deploy\u200Bkey'],
    ])(
      'CreateToken with %s in the description is INVALID_ARGUMENT and creates nothing',
      async (_label, description) => {
        const owner = f.owner('text');
        const r = await failure(
          api.createToken(
            {
              kind: TokenKind.PROJECT,
              ownerId: owner,
              name: 'n',
              description,
              scopes: ['read'],
              expiresAt: inMs(s.clock.now(), HOUR_MS),
            },
            s.adminSecret,
          ),
        );
        expect(r.code).toBe(Code.InvalidArgument);
        expect(r.rawMessage).toBe(MSG_CONTROL);
        expect(await f.ofOwner(owner)).toHaveLength(0);
      },
    );

    it('ordinary Unicode text (accents, CJK, emoji) is accepted unchanged', async () => {
      const description = 'Déploiement – 配置 🚀';
      const res = await api.createToken(
        {
          kind: TokenKind.PROJECT,
          ownerId: f.owner('text'),
          name: 'n',
          description,
          scopes: ['read'],
          expiresAt: inMs(s.clock.now(), HOUR_MS),
        },
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      expect(res.token!.description).toBe(description);
      expect((await f.get(res.token!.id)).description).toBe(description);
    });
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(ENGINES)(
  'revoking a rotated token cannot switch reuse detection off (grpc-js + fetch /oauth/revoke) on %s',
  (engine) => {
    let s: TestServer;
    let api: Api;
    const f = fixtures(
      () => s,
      () => api,
    );

    beforeAll(async () => {
      s = await startTestServer({}, { engine });
      api = grpcApi(s);
    });
    afterAll(async () => {
      api.close();
      await s.stop();
    });

    /** RFC 7009 §2.1: the holder posts the token itself, form-encoded. */
    async function oauthRevoke(token: string): Promise<{ status: number; body: string }> {
      const res = await fetch(`${s.httpUrl}/oauth/revoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      });
      return { status: res.status, body: await res.text() };
    }

    async function selfRotate(secret: string) {
      const res = await api.rotateToken({}, secret);
      issuedSecrets.add(res.secret);
      return res;
    }

    /** Rule 3 outcome: every member revoked for reuse, secrets dead, one family_revoked event each. */
    async function expectFamilyRevokedForReuse(familyId: string, secrets: string[]) {
      const members = await f.family(familyId);
      expect(members.length).toBeGreaterThan(1);
      for (const m of members) {
        expect(m.state, `state of ${m.id}`).toBe(TokenState.REVOKED);
        expect(m.revokeReason, `revoke reason of ${m.id}`).toBe('reuse_detected');
      }
      for (const secret of secrets) expect(await f.active(secret)).toBe(false);
      const logged = (await s.rotor.store.events.list({ familyId }, 100)).filter((e) => e.type === 'family_revoked');
      expect(logged.map((e) => e.tokenId).sort()).toEqual(members.map((m) => m.id).sort());
      for (const e of logged) expect(e.reason).toBe('reuse_detected');
    }

    it('A rotated to B; /oauth/revoke of A answers 200 but A stays ROTATED; A presented after the grace is reuse and B is revoked', async () => {
      const a = await f.create(f.owner('svc'), { scopes: ['rotor:rotate', 'read'] });
      const b = await selfRotate(a.secret);

      const revoked = await oauthRevoke(a.secret);
      expect(revoked).toEqual({ status: 200, body: '' });

      const seen = await f.get(a.id);
      expect(seen.state).toBe(TokenState.ROTATED);
      expect(seen.revokeReason).toBe('rotated');
      expect(seen.successorId).toBe(b.token!.id);
      expect(await f.active(b.secret)).toBe(true);

      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const reuse = await failure(api.rotateToken({}, a.secret));
      expect(reuse.code).toBe(Code.PermissionDenied);
      expect(reuse.rawMessage).toBe(MSG_REUSE);
      expect(reuse.meta('rotor-error')).toBe('reuse_detected');

      await expectFamilyRevokedForReuse(a.familyId, [a.secret, b.secret]);
      const viaB = await failure(api.getToken({ id: b.token!.id }, b.secret));
      expect(viaB.code).toBe(Code.Unauthenticated);
      expect(viaB.rawMessage).toBe(
        `${MSG_REVOKED}: reuse detected at ${new Date(ms((await f.get(b.token!.id)).revokedAt)).toISOString()}`,
      );
    });

    it('with overlap 60 s, A authenticates inside the overlap until /oauth/revoke ends it; A stays ROTATED and the end is logged', async () => {
      const a = await f.create(f.owner('svc'), { scopes: ['rotor:rotate', 'read'], policy: { overlapSeconds: 60n } });
      const b = await selfRotate(a.secret);

      expect((await api.getToken({ id: a.id }, a.secret)).token!.state).toBe(TokenState.ROTATED);
      expect(await f.active(a.secret)).toBe(true);

      expect(await oauthRevoke(a.secret)).toEqual({ status: 200, body: '' });

      const g = await failure(api.getToken({ id: a.id }, a.secret));
      expect(g.code).toBe(Code.Unauthenticated);
      expect(g.rawMessage).toBe(MSG_OVERLAP_ENDED);
      expect(await f.active(a.secret)).toBe(false);

      const seen = await f.get(a.id);
      expect(seen.state).toBe(TokenState.ROTATED);
      expect(seen.revokeReason).toBe('rotated');
      expect(seen.successorId).toBe(b.token!.id);

      const log = await s.rotor.store.events.list({ tokenId: a.id }, 100);
      expect(log.map((e) => [e.type, e.reason])).toEqual([
        ['created', null],
        ['rotated', 'rotated'],
        ['revoked', 'overlap_ended'],
      ]);
      // The holder revoked it by possession: the actor is the token itself.
      expect(log[2]!.actor).toBe(a.id);

      // Revoking again is answered the same way and changes nothing (RFC 7009 §2.2).
      expect(await oauthRevoke(a.secret)).toEqual({ status: 200, body: '' });
      expect(await s.rotor.store.events.list({ tokenId: a.id }, 100)).toHaveLength(3);

      // The successor is untouched ...
      expect((await api.getToken({ id: b.token!.id }, b.secret)).token!.state).toBe(TokenState.ACTIVE);
      // ... and A is still subject to rule 3.
      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const reuse = await failure(api.rotateToken({}, a.secret));
      expect(reuse.code).toBe(Code.PermissionDenied);
      expect(reuse.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(a.familyId, [a.secret, b.secret]);
    });

    it('/oauth/revoke of an active token revokes it (the holder can still revoke what it holds)', async () => {
      const a = await f.create(f.owner('svc'), { scopes: ['read'] });
      expect(await oauthRevoke(a.secret)).toEqual({ status: 200, body: '' });
      const seen = await f.get(a.id);
      expect(seen.state).toBe(TokenState.REVOKED);
      expect(seen.revokeReason).toBe('revoked');
      const g = await failure(api.getToken({ id: a.id }, a.secret));
      expect(g.code).toBe(Code.Unauthenticated);
      expect(g.rawMessage).toBe(MSG_REVOKED);
    });

    it('a rotated token whose own expiry has passed, presented after the grace, is reuse (family revoked), not "expired"', async () => {
      const a = await f.create(f.owner('svc'), {
        scopes: ['rotor:rotate', 'read'],
        lifetimeMs: 30_000,
        policy: { defaultLifetimeSeconds: 3600n },
      });
      const b = await selfRotate(a.secret);
      expect(ms(b.token!.expiresAt)).toBeGreaterThan(ms(a.token.expiresAt) + 30 * 60_000);

      s.clock.advance(31_000);
      expect(s.clock.now()).toBeGreaterThan(ms(a.token.expiresAt));
      // Rotation takes precedence over expiry in the derived state.
      expect((await f.get(a.id)).state).toBe(TokenState.ROTATED);

      const reuse = await failure(api.rotateToken({}, a.secret));
      expect(reuse.code).toBe(Code.PermissionDenied);
      expect(reuse.rawMessage).toBe(MSG_REUSE);
      await expectFamilyRevokedForReuse(a.familyId, [a.secret, b.secret]);
    });
  },
);

// ---------------------------------------------------------------------------------------------

/**
 * Rotation by id hands the caller the successor's secret, i.e. it mints a token; and a rotated
 * token inside its overlap window only makes ordinary calls. Neither may yield a secret looser
 * than checkCreation would let the caller create.
 */
describe.each(ENGINES)('rotation by id and overlap-window callers stay within the creation limits on %s', (engine) => {
  let s: TestServer;
  let api: Api;
  const f = fixtures(
    () => s,
    () => api,
  );

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    api = grpcApi(s);
  });
  afterAll(async () => {
    api.close();
    await s.stop();
  });

  it('an audience-bound owner token cannot rotate by id an unrestricted sibling (it may not create one)', async () => {
    const owner = f.owner();
    const caller = await f.create(owner, { scopes: ['read', 'rotor:rotate'], audiences: ['api.a'] });
    const sibling = await f.create(owner, { scopes: ['read'], audiences: [] });
    const r = await failure(api.rotateToken({ id: sibling.id }, caller.secret));
    expect(r.code).toBe(Code.PermissionDenied);
    expect(r.rawMessage).toBe('caller lacks audiences of the target token: (unrestricted)');
    expect((await f.get(sibling.id)).state).toBe(TokenState.ACTIVE);
  });

  it('rotating a longer-lived sibling by id, an owner token gets a successor that does not outlive the caller', async () => {
    const owner = f.owner();
    const caller = await f.create(owner, { scopes: ['read', 'rotor:rotate'], lifetimeMs: HOUR_MS });
    const sibling = await f.create(owner, { scopes: ['read'], lifetimeMs: 30 * DAY_MS });
    const res = await api.rotateToken({ id: sibling.id }, caller.secret);
    issuedSecrets.add(res.secret);
    expect(ms(res.token!.expiresAt)).toBe(ms(caller.token.expiresAt));
  });

  it('a rotated token inside its overlap window cannot rotate its successor by id', async () => {
    const a = await f.create(f.owner(), { scopes: ['read', 'rotor:rotate'], policy: { overlapSeconds: 60n } });
    const b = await api.rotateToken({}, a.secret);
    issuedSecrets.add(b.secret);
    const r = await failure(api.rotateToken({ id: b.token!.id }, a.secret));
    expect(r.code).toBe(Code.PermissionDenied);
    expect(r.rawMessage).toBe('a rotated token may not create or manage tokens; use its successor');
    expect((await f.get(b.token!.id)).state).toBe(TokenState.ACTIVE);
  });

  it('a rotated token inside its overlap window cannot create a token (a new family that reuse detection would not reach)', async () => {
    const owner = f.owner();
    const a = await f.create(owner, {
      scopes: ['read', 'rotor:rotate'],
      lifetimeMs: 30 * DAY_MS,
      policy: { overlapSeconds: 60n },
    });
    const b = await api.rotateToken({}, a.secret);
    issuedSecrets.add(b.secret);
    const r = await failure(
      api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: owner,
          name: 'spin-off',
          scopes: ['read', 'rotor:rotate'],
          expiresAt: inMs(s.clock.now(), 29 * DAY_MS),
        },
        a.secret,
      ),
    );
    expect(r.code).toBe(Code.PermissionDenied);
    expect(r.rawMessage).toBe('a rotated token may not create or manage tokens; use its successor');
    expect(await f.ofOwner(owner)).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe.each(ENGINES)('bootstrap refuses while an active admin token exists on %s', (engine) => {
  let s: TestServer;
  let api: Api;

  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    api = grpcApi(s);
  });
  afterAll(async () => {
    api.close();
    await s.stop();
  });

  it('refused while the harness admin is active; after it revokes itself, succeeds exactly once', async () => {
    const opts = { ownerId: 'ops', lifetimeSeconds: 3600 };
    const first = await rotorErrorOf(bootstrapAdmin(s.rotor.app, opts));
    expect(first.code).toBe('permission_denied');
    expect(first.message).toBe(MSG_BOOTSTRAP_REFUSED);

    const adminId = (await api.introspectToken({ token: s.adminSecret }, s.adminSecret)).tokenId;
    expect(adminId).toMatch(/^tok_/);
    const revoked = (await api.revokeToken({ id: adminId }, s.adminSecret)).token!;
    expect(revoked.state).toBe(TokenState.REVOKED);
    const dead = await failure(api.getToken({ id: adminId }, s.adminSecret));
    expect(dead.code).toBe(Code.Unauthenticated);
    expect(dead.rawMessage).toBe(MSG_REVOKED);

    const minted = await bootstrapAdmin(s.rotor.app, opts);
    issuedSecrets.add(minted.secret);
    expect(minted.record.scopes).toContain('rotor:admin');
    expect(minted.record.ownerId).toBe('ops');
    // The new admin works over the wire.
    const seen = (await api.getToken({ id: adminId }, minted.secret)).token!;
    expect(seen.state).toBe(TokenState.REVOKED);

    const again = await rotorErrorOf(bootstrapAdmin(s.rotor.app, opts));
    expect(again.code).toBe('permission_denied');
    expect(again.message).toBe(MSG_BOOTSTRAP_REFUSED);
    const admins = (await api.listTokens({ ownerId: 'ops', pageSize: 100 }, minted.secret)).tokens;
    expect(admins.map((t) => t.id)).toEqual([minted.record.id]);
    const log = await s.rotor.store.events.list({ tokenId: minted.record.id }, 10);
    expect(log.map((e) => [e.type, e.actor])).toEqual([['created', 'bootstrap']]);

    // Once that admin has expired too, bootstrap is the way back in (once more).
    s.clock.advance(3_601_000);
    const next = await bootstrapAdmin(s.rotor.app, opts);
    issuedSecrets.add(next.secret);
    expect((await api.introspectToken({ token: next.secret }, next.secret)).active).toBe(true);
    const refusedAgain = await rotorErrorOf(bootstrapAdmin(s.rotor.app, opts));
    expect(refusedAgain.message).toBe(MSG_BOOTSTRAP_REFUSED);
  });
});
