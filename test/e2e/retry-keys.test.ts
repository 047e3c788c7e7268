/**
 * Idempotency keys cannot be guessed (docs/rotation.md rule 3, "Wrong retry keys"): inside the
 * reuse grace a holder of the old secret who tries wrong keys gets "already rotated" a few times,
 * each refusal logged as a RETRY_REFUSED event, and then the next wrong key is reuse and revokes
 * the family. A replay with the right key is logged as a REPLAYED event. Requests racing the
 * rotation (already in flight when it committed) are not guesses: 50 racers with 50 different keys
 * leave the family intact. Over grpc-js and Connect, on every engine.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REFUSED_RETRY_KEYS, RETRY_RACE_WINDOW_MS } from '../../src/domain/rotation.js';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { withEngines } from '../support/engines.js';
import { connectApi, failure, grpcApi, newKey, type Api, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

const ALREADY_ROTATED = (id: string) => `token was already rotated; its successor is ${id}`;
const WRONG_KEYS_REUSE =
  'too many wrong idempotency keys for a rotated token: treated as reuse, every token of its family is now revoked';

describe.each(withEngines<Wire>(['grpc', 'connect']))('retry keys over %s on %s', (wire, engine) => {
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
        ownerId: `svc-${wire}`,
        name: 'keys',
        scopes: ['rotor:rotate'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
      },
      s.adminSecret,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret };
  }

  async function rotate(secret: string, idempotencyKey?: string) {
    const r = await api.rotateToken(idempotencyKey === undefined ? {} : { idempotencyKey }, secret);
    issuedSecrets.add(r.secret);
    return { id: r.token!.id, secret: r.secret };
  }

  const stateOf = async (id: string) => (await api.getToken({ id }, s.adminSecret)).token!.state;
  const eventsOf = (tokenId: string) => s.rotor.store.events.list({ tokenId }, 100);
  /** What a watcher resuming from the start of the log receives for `tokenId`, up to its newest event. */
  async function replayLog(tokenId: string) {
    const last = (await eventsOf(tokenId)).at(-1)!.sequence;
    const w = api.watchExpiry({ tokenIds: [tokenId], afterSequence: 0n }, s.adminSecret);
    try {
      return await w.until((es) => es.some((e) => e.sequence >= BigInt(last)), 10_000, `events up to ${last}`);
    } finally {
      w.cancel();
    }
  }

  it(`${MAX_REFUSED_RETRY_KEYS} wrong keys inside the grace are refused and logged; the next one is reuse and revokes the family`, async () => {
    const a = await newToken();
    const b = await rotate(a.secret, newKey());
    s.clock.advance(RETRY_RACE_WINDOW_MS + 1); // past the race window, inside the 10 s grace: guesses
    for (let i = 0; i < MAX_REFUSED_RETRY_KEYS; i++) {
      const f = await failure(api.rotateToken({ idempotencyKey: newKey() }, a.secret));
      expect(f.code).toBe(Code.FailedPrecondition);
      expect(f.rawMessage).toBe(ALREADY_ROTATED(b.id));
      expect(await stateOf(b.id)).toBe(TokenState.ACTIVE);
    }
    const refused = (await eventsOf(a.id)).filter((e) => e.type === 'retry_refused');
    expect(refused).toHaveLength(MAX_REFUSED_RETRY_KEYS);
    for (const e of refused)
      expect(e).toMatchObject({ successorId: b.id, reason: 'wrong_idempotency_key', actor: a.id });
    const watched = await replayLog(a.id);
    expect(watched.filter((e) => e.type === ExpiryEventType.RETRY_REFUSED)).toHaveLength(MAX_REFUSED_RETRY_KEYS);

    const reuse = await failure(api.rotateToken({ idempotencyKey: newKey() }, a.secret));
    expect(reuse.code).toBe(Code.PermissionDenied);
    expect(reuse.rawMessage).toBe(WRONG_KEYS_REUSE);
    expect(await stateOf(a.id)).toBe(TokenState.REVOKED);
    expect(await stateOf(b.id)).toBe(TokenState.REVOKED);
    expect(s.logs.some((l) => l.includes('token reuse detected') && l.includes('"cause":"wrong_retry_keys"'))).toBe(
      true,
    );
  });

  it('requests without a key, and the right key, never count: the family stays intact after many of them', async () => {
    const a = await newToken();
    const key = newKey();
    const b = await rotate(a.secret, key);
    s.clock.advance(RETRY_RACE_WINDOW_MS + 1);
    for (let i = 0; i < MAX_REFUSED_RETRY_KEYS + 3; i++) {
      const f = await failure(api.rotateToken({}, a.secret));
      expect(f.code).toBe(Code.FailedPrecondition);
      expect((await rotate(a.secret, key)).id).toBe(b.id);
    }
    expect(await stateOf(b.id)).toBe(TokenState.ACTIVE);
    expect((await eventsOf(a.id)).filter((e) => e.type === 'retry_refused')).toEqual([]);
  });

  it('every replay is logged as REPLAYED (log and WatchExpiry), the token stays rotated', async () => {
    const a = await newToken();
    const w = api.watchExpiry({ tokenIds: [a.id] }, s.adminSecret);
    try {
      await waitForWatchers(s, 1);
      const key = newKey();
      const b = await rotate(a.secret, key);
      const again = await rotate(a.secret, key);
      expect(again).toEqual(b);
      const replayed = (await eventsOf(a.id)).filter((e) => e.type === 'replayed');
      expect(replayed).toHaveLength(1);
      expect(replayed[0]).toMatchObject({ successorId: b.id, reason: null, actor: a.id });
      const seen = await w.until(
        (es) => es.some((e) => e.type === ExpiryEventType.REPLAYED),
        10_000,
        'the REPLAYED event',
      );
      const ev = seen.find((e) => e.type === ExpiryEventType.REPLAYED)!;
      expect(ev).toMatchObject({ tokenId: a.id, successorId: b.id, state: TokenState.ROTATED });
      expect(await stateOf(a.id)).toBe(TokenState.ROTATED);
    } finally {
      w.cancel();
      await waitForWatchers(s, 0);
    }
  });

  it('50 racing rotations with 50 different keys: one successor, 49 FAILED_PRECONDITION, the family intact, no key counted as a guess', async () => {
    // Each loser's wrong key arrives within the race window: logged as racing, never counted as a guess.
    const a = await newToken();
    const settled = await Promise.allSettled(Array.from({ length: 50 }, () => rotate(a.secret, newKey())));
    const won = settled.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const successor = (won[0] as PromiseFulfilledResult<{ id: string }>).value.id;
    for (const r of settled) {
      if (r.status === 'fulfilled') continue;
      expect(r.reason).toMatchObject({ code: Code.FailedPrecondition, rawMessage: ALREADY_ROTATED(successor) });
    }
    expect(await stateOf(successor)).toBe(TokenState.ACTIVE);
    const refused = (await eventsOf(a.id)).filter((e) => e.type === 'retry_refused');
    expect(refused.length).toBeLessThanOrEqual(49);
    for (const e of refused) expect(e.reason).toBe('racing_rotation');
    // A guess after the window is still the first of its own limit.
    s.clock.advance(RETRY_RACE_WINDOW_MS + 1);
    const f = await failure(api.rotateToken({ idempotencyKey: newKey() }, a.secret));
    expect(f.code).toBe(Code.FailedPrecondition);
  });
});
