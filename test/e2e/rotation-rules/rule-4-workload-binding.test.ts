/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 4: a token with a workload binding rotates only with a verified actor JWT that matches the
 * binding; an unbound token refuses an actor_token.
 * The server and the helpers are in ./support.ts.
 */
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, newKey, type Api, type Wire } from '../../support/rotor-api.js';
import { issuedSecrets, type TestServer } from '../../support/server.js';
import { JWT_TYPE } from '../../support/trust.js';
import { withEngines } from '../../support/engines.js';
import type { TestIssuer } from '../../support/jwt-issuer.js';
import { DEFAULT_GRACE_MS, MSG_REUSE, rotationRulesServer } from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, selfRotate, exchange, get, events } = rig;
  let s: TestServer;
  let api: Api;
  let admin: string;
  let ci: TestIssuer;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ s, api, admin, ci } = rig);
  });

  describe('rule 4: workload binding → verify the actor JWT or refuse', () => {
    const binding = () => ({
      issuer: ci.issuer,
      subject: 'project_path:group/app:*',
      audience: 'rotor',
      claims: { namespace_id: '42' },
    });
    const boundToken = () => newToken({ policy: { workloadBinding: binding() } });
    const proof = async (claims: Record<string, unknown> = {}) => ({
      actorToken: await ci.sign(s.clock.now(), claims),
      actorTokenType: JWT_TYPE,
    });

    it('a bound token rotates only with an actor_token JWT from the trusted issuer whose claims match the binding', async () => {
      const c = await boundToken();
      expect(c.token.policy?.workloadBinding).toMatchObject(binding());
      const without = await failure(exchange(c.secret));
      expect(without.code).toBe(Code.Unauthenticated);
      expect(without.rawMessage).toBe(
        'this token is bound to a workload: rotating it needs actor_token with actor_token_type urn:ietf:params:oauth:token-type:jwt',
      );
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);

      const next = await exchange(c.secret, await proof());
      const successor = await get(next.tokenId);
      expect(successor.policy?.workloadBinding).toMatchObject(binding());
      expect((await get(c.id)).state).toBe(TokenState.ROTATED);
      const rotated = (await events(c.familyId)).filter((e) => e.reason === 'rotated');
      expect(rotated.map((e) => e.act)).toEqual([
        { iss: ci.issuer, sub: 'project_path:group/app:ref_type:branch:ref:main' },
        { iss: ci.issuer, sub: 'project_path:group/app:ref_type:branch:ref:main' },
      ]);

      // RotateToken (the holder's own bearer token) takes the same proof.
      const third = await selfRotate(next.accessToken, await proof());
      expect(third.token!.policy?.workloadBinding).toMatchObject(binding());
      expect((await failure(api.rotateToken({}, third.secret))).code).toBe(Code.Unauthenticated);
    });

    it('a bound token with a JWT that fails verification or the binding is refused and stays active', async () => {
      const c = await boundToken();
      const t = Math.floor(s.clock.now() / 1000);
      const cases: [Record<string, unknown>, Code, string][] = [
        [
          { iss: 'https://untrusted.example' },
          Code.Unauthenticated,
          'actor_token is from an issuer that is not trusted',
        ],
        [{ aud: 'other' }, Code.Unauthenticated, 'actor_token is not for an accepted audience (aud)'],
        [{ exp: t - 120 }, Code.Unauthenticated, 'actor_token has expired (exp)'],
        [
          { sub: 'project_path:group/other:ref_type:branch:ref:main' },
          Code.PermissionDenied,
          "actor_token does not match the token's workload binding: subject",
        ],
        [
          { namespace_id: '43' },
          Code.PermissionDenied,
          "actor_token does not match the token's workload binding: claim namespace_id",
        ],
      ];
      for (const [claims, code, message] of cases) {
        const f = await failure(exchange(c.secret, await proof(claims)));
        expect([f.code, f.rawMessage]).toEqual([code, message]);
      }
      const used = await proof();
      await exchange(c.secret, used);
      const c2 = await boundToken();
      const replay = await failure(exchange(c2.secret, used));
      expect([replay.code, replay.rawMessage]).toEqual([
        Code.Unauthenticated,
        'actor_token has been used before (jti replay): request a fresh JWT',
      ]);
      expect((await get(c2.id)).state).toBe(TokenState.ACTIVE);
    });

    it('an idempotent retry of a bound rotation may present the same JWT again and gets the same successor', async () => {
      const c = await boundToken();
      const key = newKey();
      const p = await proof();
      const first = await exchange(c.secret, { ...p, idempotencyKey: key });
      const again = await exchange(c.secret, { ...p, idempotencyKey: key });
      expect(again.tokenId).toBe(first.tokenId);
      expect(again.accessToken).toBe(first.accessToken);
    });

    it('an admin rotates a bound token by id without the workload; the binding is kept', async () => {
      const c = await boundToken();
      const succ = await api.rotateToken({ id: c.id }, admin);
      issuedSecrets.add(succ.secret);
      expect(succ.token!.policy?.workloadBinding).toMatchObject(binding());
    });

    it('CreateToken refuses a binding to an untrusted issuer or an audience the issuer is not accepted for', async () => {
      const untrusted = await failure(
        newToken({ policy: { workloadBinding: { ...binding(), issuer: 'https://untrusted.example' } } }),
      );
      expect([untrusted.code, untrusted.rawMessage]).toEqual([
        Code.InvalidArgument,
        'policy.workload_binding.issuer: is not a trusted issuer of this server',
      ]);
      const aud = await failure(newToken({ policy: { workloadBinding: { ...binding(), audience: 'other' } } }));
      expect([aud.code, aud.rawMessage]).toEqual([
        Code.InvalidArgument,
        "policy.workload_binding.audience: is not one of the issuer's accepted audiences",
      ]);
    });

    it('an unbound token refuses an actor_token instead of ignoring it, valid or not', async () => {
      const c = await newToken();
      for (const actor of [await proof(), { actorToken: 'eyJhbGciOiJub25lIn0.e30.', actorTokenType: JWT_TYPE }]) {
        const f = await failure(exchange(c.secret, actor));
        expect(f.code).toBe(Code.InvalidArgument);
        expect(f.rawMessage).toBe('actor_token is not accepted: this token has no workload binding');
      }
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);
    });

    it('rule 3 comes first: a superseded token presented with an actor_token after the grace is reuse', async () => {
      const c = await newToken();
      await exchange(c.secret);
      s.clock.advance(DEFAULT_GRACE_MS + 1000);
      const f = await failure(
        exchange(c.secret, {
          actorToken: 'eyJhbGciOiJub25lIn0.e30.',
          actorTokenType: 'urn:ietf:params:oauth:token-type:jwt',
        }),
      );
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe(MSG_REUSE);
      expect((await get(c.id)).state).toBe(TokenState.REVOKED);
    });
  });
});
