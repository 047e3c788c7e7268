/**
 * docs/rotation.md "The rules, in order", end to end over grpc-js and Connect on both engines.
 * Rule 1: the presented token is parsed and its checksum checked, then it is looked up by digest;
 * malformed, bad checksum or unknown is UNAUTHENTICATED (and self-rotation needs rotor:rotate).
 * The server and the helpers are in ./support.ts.
 */
import { randomBytes } from 'node:crypto';
import { Code } from '@connectrpc/connect';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatSecret } from '../../../src/domain/token-secret.js';
import { TokenState } from '../../../src/gen/rotor/v1/token_pb.js';
import { failure, type Api, type Wire } from '../../support/rotor-api.js';
import { withEngines } from '../../support/engines.js';
import { rotationRulesServer } from './support.js';

describe.each(withEngines<Wire>(['grpc', 'connect']))('rotation rules over %s on %s', (wire, engine) => {
  const rig = rotationRulesServer(wire, engine);
  const { newToken, exchange, get, family } = rig;
  let api: Api;
  // Set once the server of rotationRulesServer has started (its beforeAll runs first).
  beforeAll(() => {
    ({ api } = rig);
  });

  describe('rule 1: parse and checksum the presented token, look it up by digest; unknown → unauthenticated', () => {
    it('a well-formed but unknown token is UNAUTHENTICATED', async () => {
      const unknown = formatSecret('service_account', (n) => new Uint8Array(randomBytes(n)));
      const f = await failure(api.rotateToken({}, unknown));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe('bearer token is unknown');
      expect(f.rawMessage).not.toContain(unknown);
    });

    it('a typo (checksum mismatch) is refused before any lookup, and the real token is untouched', async () => {
      const c = await newToken();
      // Change one character of the random part (not the prefix, not the checksum).
      const i = 'rtr_sa_'.length + 5;
      const typo = c.secret.slice(0, i) + (c.secret[i] === 'A' ? 'B' : 'A') + c.secret.slice(i + 1);
      const f = await failure(api.rotateToken({}, typo));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe('bearer token checksum does not match');
      expect(f.rawMessage).not.toContain(typo);
      const t = await get(c.id);
      expect(t.state).toBe(TokenState.ACTIVE);
      expect(t.successorId).toBe('');
    });

    it('garbage and a missing bearer are UNAUTHENTICATED with a clear message', async () => {
      const garbage = await failure(api.rotateToken({}, 'not-a-rotor-token'));
      expect(garbage.code).toBe(Code.Unauthenticated);
      expect(garbage.rawMessage).toBe('bearer token is malformed');
      const missing = await failure(api.rotateToken({}, undefined));
      expect(missing.code).toBe(Code.Unauthenticated);
      expect(missing.rawMessage).toBe('missing bearer token');
    });

    it('ExchangeToken with an unknown subject_token is UNAUTHENTICATED', async () => {
      const unknown = formatSecret('project', (n) => new Uint8Array(randomBytes(n)));
      const f = await failure(exchange(unknown));
      expect(f.code).toBe(Code.Unauthenticated);
      expect(f.rawMessage).toBe('token is unknown');
    });

    it('self-rotation needs the rotor:rotate scope', async () => {
      const c = await newToken({ scopes: ['read'] });
      const f = await failure(api.rotateToken({}, c.secret));
      expect(f.code).toBe(Code.PermissionDenied);
      expect(f.rawMessage).toBe('token lacks the rotor:rotate scope needed to rotate itself');
      expect((await get(c.id)).state).toBe(TokenState.ACTIVE);
      expect(await family(c.familyId)).toHaveLength(1);
    });
  });
});
