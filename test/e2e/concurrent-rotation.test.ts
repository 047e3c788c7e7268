/**
 * 50 concurrent rotations of one token → exactly one successor; the others get the same successor
 * (same idempotency key) or FAILED_PRECONDITION (inside the grace); the family stays active. After
 * the grace, presenting the old token for rotation revokes every member (IntrospectToken inactive
 * for all) and is recorded in the event log (docs/rotation.md rules 3 and 6).
 *
 * Primary run: plain @grpc/grpc-js on the gRPC port; the same scenario again over Connect (HTTP/1.1).
 * Both run on the embedded SQLite store (one connection, so transactions serialise) and, when
 * ROTOR_TEST_DATABASE_URL is set (test/support/engines.ts), on PostgreSQL, where transactions
 * really overlap and the compare-and-set of rule 6 decides the race.
 */
import { randomBytes } from 'node:crypto';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind, TokenState, type Token } from '../../src/gen/rotor/v1/token_pb.js';
import { RpcFailure, connectApi, failure, grpcApi, type Api, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { withEngines } from '../support/engines.js';

const N = 50;
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
/** Server default reuse grace (docs/rotation.md rule 3). */
const DEFAULT_GRACE_MS = 10_000;
const MSG_ALREADY_ROTATED = (successorId: string) => `token was already rotated; its successor is ${successorId}`;
const MSG_REUSE = 'token was already rotated: reuse detected, every token of its family is now revoked';

/** One answer of the burst: who asked (with or without the shared key) and what came back. */
type Answer = { keyed: boolean; ok: true; id: string; secret: string } | { keyed: boolean; ok: false; error: unknown };

describe.each(withEngines<Wire>(['grpc', 'connect']))(
  `${N} concurrent rotations of one token over %s on %s`,
  (wire, engine) => {
    let s: TestServer;
    let api: Api;

    beforeAll(async () => {
      s = await startTestServer({}, { engine });
      api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
    });
    afterAll(async () => {
      api?.close();
      await s?.stop();
    });

    async function newToken() {
      const res = await api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc-race',
          name: 'replicated app',
          scopes: ['rotor:rotate', 'read'],
          expiresAt: inMs(s.clock.now(), 86_400_000),
        },
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret };
    }

    async function family(familyId: string): Promise<Token[]> {
      return (await api.listTokens({ familyId, pageSize: 100 }, s.adminSecret)).tokens;
    }

    /** Fires `calls` at once and collects every answer, in request order. */
    async function burst(
      calls: { keyed: boolean; run: () => Promise<{ id: string; secret: string }> }[],
    ): Promise<Answer[]> {
      const settled = await Promise.allSettled(calls.map((c) => c.run()));
      return settled.map((r, i): Answer => {
        const keyed = calls[i]!.keyed;
        if (r.status === 'fulfilled') {
          issuedSecrets.add(r.value.secret);
          return { keyed, ok: true, ...r.value };
        }
        return { keyed, ok: false, error: r.reason };
      });
    }

    /** Every refused answer is FAILED_PRECONDITION naming the one successor (rule 3, inside the grace). */
    function expectRefusalsNameSuccessor(answers: Answer[], successorId: string) {
      for (const a of answers) {
        if (a.ok) continue;
        expect(a.error).toBeInstanceOf(RpcFailure);
        const f = a.error as RpcFailure;
        expect(f.code).toBe(Code.FailedPrecondition);
        expect(f.rawMessage).toBe(MSG_ALREADY_ROTATED(successorId));
        expect(f.meta('rotor-successor-id')).toBe(successorId);
      }
    }

    /** Exactly one successor; the family is still active: predecessor rotated, successor active, nothing revoked. */
    async function expectOneSuccessorFamilyActive(t: { id: string; familyId: string }): Promise<Token> {
      const members = await family(t.familyId);
      expect(members).toHaveLength(2);
      const old = members.find((m) => m.id === t.id)!;
      const successors = members.filter((m) => m.id !== t.id);
      expect(successors).toHaveLength(1);
      const successor = successors[0]!;
      expect(old.state).toBe(TokenState.ROTATED);
      expect(old.successorId).toBe(successor.id);
      expect(successor.previousId).toBe(t.id);
      expect(successor.state).toBe(TokenState.ACTIVE);
      const log = await s.rotor.store.events.list({ familyId: t.familyId }, 1000);
      expect(log.filter((e) => e.type === 'rotated')).toHaveLength(1);
      expect(log.filter((e) => e.type === 'family_revoked')).toHaveLength(0);
      return successor;
    }

    /** After the grace: presenting the old token is reuse; every member revoked and logged. */
    async function expectReuseRevokesEveryMember(
      t: { id: string; familyId: string; secret: string },
      successorSecret: string,
    ) {
      s.clock.advance(DEFAULT_GRACE_MS + 1_000);
      const f = await failure(api.rotateToken({}, t.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      expect(f.meta('rotor-family-id')).toBe(t.familyId);

      for (const secret of [t.secret, successorSecret]) {
        expect((await api.introspectToken({ token: secret }, s.adminSecret)).active).toBe(false);
      }
      const members = await family(t.familyId);
      expect(members).toHaveLength(2);
      for (const m of members) {
        expect(m.state).toBe(TokenState.REVOKED);
        expect(m.revokeReason).toBe('reuse_detected');
      }
      const revoked = (await s.rotor.store.events.list({ familyId: t.familyId }, 1000)).filter(
        (e) => e.type === 'family_revoked',
      );
      expect(revoked.map((e) => e.tokenId).sort()).toEqual(members.map((m) => m.id).sort());
      for (const e of revoked) {
        expect(e.reason).toBe('reuse_detected');
        expect(e.actor).toBe(t.id);
      }
      // The successor is no longer a credential.
      const g = await failure(api.introspectToken({ token: successorSecret }, successorSecret));
      expect(g.code).toBe(Code.Unauthenticated);
      const revokedAt = members[0]!.revokedAt!;
      expect(
        members.every((m) => m.revokedAt?.seconds === revokedAt.seconds && m.revokedAt.nanos === revokedAt.nanos),
      ).toBe(true);
      expect(g.rawMessage).toBe(
        `bearer token has been revoked: reuse detected at ${timestampDate(revokedAt).toISOString()}`,
      );
    }

    it(`${N} rotations, half with one shared idempotency key, half without: one successor, same secret for the key, FAILED_PRECONDITION for the rest; reuse after the grace revokes every member`, async () => {
      const t = await newToken();
      const key = randomBytes(24).toString('base64url');
      const answers = await burst(
        Array.from({ length: N }, (_, i) => {
          const keyed = i % 2 === 0;
          return {
            keyed,
            run: async () => {
              const r = await api.rotateToken(keyed ? { idempotencyKey: key } : {}, t.secret);
              return { id: r.token!.id, secret: r.secret };
            },
          };
        }),
      );
      const successor = await expectOneSuccessorFamilyActive(t);

      const ok = answers.filter((a): a is Extract<Answer, { ok: true }> => a.ok);
      expect(ok.length).toBeGreaterThanOrEqual(1);
      for (const a of ok) expect(a.id).toBe(successor.id);
      expect(new Set(ok.map((a) => a.secret)).size).toBe(1);
      const keyedOk = ok.filter((a) => a.keyed);
      if (keyedOk.length > 0) {
        // The winning rotation carried the key: every same-key caller got it back, identical.
        expect(keyedOk).toHaveLength(N / 2);
        expect(ok.filter((a) => !a.keyed)).toHaveLength(0);
      } else {
        // A key-less call won: it alone succeeded; every keyed caller saw "already rotated".
        expect(ok).toHaveLength(1);
      }
      expectRefusalsNameSuccessor(answers, successor.id);
      expect(answers.filter((a) => !a.ok)).toHaveLength(N - ok.length);

      const successorSecret = ok[0]!.secret;
      expect((await api.introspectToken({ token: successorSecret }, s.adminSecret)).active).toBe(true);
      await expectReuseRevokesEveryMember(t, successorSecret);
    });

    it(`${N} rotations all with the same idempotency key: every caller gets the identical successor and secret`, async () => {
      const t = await newToken();
      const key = randomBytes(24).toString('base64url');
      const answers = await burst(
        Array.from({ length: N }, () => ({
          keyed: true,
          run: async () => {
            const r = await api.rotateToken({ idempotencyKey: key }, t.secret);
            return { id: r.token!.id, secret: r.secret };
          },
        })),
      );
      const failed = answers.filter((a) => !a.ok);
      expect(failed.map((a) => (a.ok ? null : String(a.error)))).toEqual([]);
      const successor = await expectOneSuccessorFamilyActive(t);
      const ok = answers.filter((a): a is Extract<Answer, { ok: true }> => a.ok);
      expect(new Set(ok.map((a) => a.id))).toEqual(new Set([successor.id]));
      expect(new Set(ok.map((a) => a.secret)).size).toBe(1);
      expect((await api.introspectToken({ token: ok[0]!.secret }, ok[0]!.secret)).tokenId).toBe(successor.id);
    });

    it(`${N} rotations without a key: exactly one succeeds, ${N - 1} are FAILED_PRECONDITION naming it`, async () => {
      const t = await newToken();
      const answers = await burst(
        Array.from({ length: N }, () => ({
          keyed: false,
          run: async () => {
            const r = await api.rotateToken({}, t.secret);
            return { id: r.token!.id, secret: r.secret };
          },
        })),
      );
      const successor = await expectOneSuccessorFamilyActive(t);
      const ok = answers.filter((a): a is Extract<Answer, { ok: true }> => a.ok);
      expect(ok).toHaveLength(1);
      expect(ok[0]!.id).toBe(successor.id);
      expectRefusalsNameSuccessor(answers, successor.id);
      await expectReuseRevokesEveryMember(t, ok[0]!.secret);
    });

    it(`${N} concurrent rotations mixing RotateToken and ExchangeToken with one shared key: one successor, one secret`, async () => {
      const t = await newToken();
      const key = randomBytes(24).toString('base64url');
      const answers = await burst(
        Array.from({ length: N }, (_, i) => ({
          keyed: true,
          run: async () => {
            if (i % 2 === 0) {
              const r = await api.rotateToken({ idempotencyKey: key }, t.secret);
              return { id: r.token!.id, secret: r.secret };
            }
            const r = await api.exchangeToken({
              grantType: GRANT,
              subjectToken: t.secret,
              subjectTokenType: ACCESS_TOKEN,
              idempotencyKey: key,
            });
            return { id: r.tokenId, secret: r.accessToken };
          },
        })),
      );
      expect(answers.filter((a) => !a.ok).map((a) => (a.ok ? null : String(a.error)))).toEqual([]);
      const successor = await expectOneSuccessorFamilyActive(t);
      const ok = answers.filter((a): a is Extract<Answer, { ok: true }> => a.ok);
      expect(new Set(ok.map((a) => a.id))).toEqual(new Set([successor.id]));
      expect(new Set(ok.map((a) => a.secret)).size).toBe(1);
    });
  },
);
