/**
 * The server key rotation drill of docs/server-key.md, as an operator runs it: two `rotor serve`
 * replicas on one PostgreSQL database, under continuous load from real clients (grpc-js on one
 * replica, Connect on the other: introspections of each client's own token and rotations), while
 * the replicas are restarted one by one, first with B added as a previous key, then with B current
 * and A previous. Tokens, an idempotency digest and a JWT signing key are made under A first.
 *
 * Checked: no call of the load fails during the drill; an idempotent retry of a rotation made under
 * A, sent after the change, gets the same successor and secret; `rotor key-status` reaches 0 rows
 * under A once every token has been used; then A is removed and the replicas start with B alone;
 * and a replica with a key the database does not know is refused, naming the count.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { keyIdOf } from '../../src/domain/server-keys.js';
import { secretBytes } from '../../src/runtime/server-secret.js';
import { describeOnPostgres } from '../support/engines.js';
import { runCli, waitFor, type ServeProcess } from '../support/process.js';
import { addressOf, startReplicas, type ReplicaSet } from '../support/replicas.js';
import { connectApi, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs } from '../support/server.js';

const A = randomBytes(32).toString('hex');
const B = randomBytes(32).toString('hex');
const ID_A = keyIdOf(secretBytes(A));
const ID_B = keyIdOf(secretBytes(B));
const WORKERS = 4;
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';

interface Slot {
  proc: ServeProcess;
  api: Api;
  inflight: number;
}

interface KeyRow {
  key: string;
  role: string;
  rows: number;
  tokens: number;
  idempotency_digests: number;
  signing_keys: number;
  ended: number;
}

describeOnPostgres('the server key rotation drill on two replicas under load on postgres', () => {
  let set: ReplicaSet;
  /** The replicas taking calls; undefined while one is being restarted. */
  const slots: (Slot | undefined)[] = [undefined, undefined];
  const failures: string[] = [];
  let ops = 0;
  let stopping = false;
  let rr = 0;

  const clientFor = (i: number, proc: ServeProcess) =>
    i === 0 ? grpcApi(addressOf(proc)) : connectApi(addressOf(proc));

  beforeAll(async () => {
    set = await startReplicas(2, { ROTOR_SECRET: A, ROTOR_RETRY_WINDOW_SECONDS: '3600' });
    set.replicas.forEach((proc, i) => {
      slots[i] = { proc, api: clientFor(i, proc), inflight: 0 };
    });
  }, 90_000);
  afterAll(async () => {
    stopping = true;
    for (const s of slots) s?.api.close();
    await set?.stop();
  });

  /** A call through the next replica in rotation, counted while it runs (a restart waits for it). */
  async function call<T>(f: (api: Api) => Promise<T>): Promise<T> {
    let slot: Slot | undefined;
    for (let k = 0; k < 2 && slot === undefined; k++) slot = slots[rr++ % 2];
    if (slot === undefined) throw new Error('no replica in rotation');
    slot.inflight++;
    try {
      return await f(slot.api);
    } finally {
      slot.inflight--;
    }
  }

  /** Takes replica i out of rotation, waits for its calls, stops it (SIGTERM) and starts it again with `env`. */
  async function restart(i: number, env: Record<string, string>): Promise<void> {
    const slot = slots[i]!;
    slots[i] = undefined;
    await waitFor(`the calls on replica ${i} to finish`, () => slot.inflight === 0);
    slot.api.close();
    expect(await slot.proc.stop()).toBe(0);
    const proc = await set.start(env);
    slots[i] = { proc, api: clientFor(i, proc), inflight: 0 };
  }

  async function newToken(name: string) {
    const r = await call((api) =>
      api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'svc-drill',
          name,
          scopes: ['rotor:rotate', 'read'],
          expiresAt: inMs(Date.now(), 86_400_000),
        },
        set.adminSecret,
      ),
    );
    return { id: r.token!.id, secret: r.secret };
  }

  /** One client: introspects its own token, and every third call rotates it (no idempotency key). */
  async function worker(token: { id: string; secret: string }): Promise<{ id: string; secret: string }> {
    let current = token;
    for (let n = 0; !stopping; n++) {
      try {
        const seen = await call((api) => api.introspectToken({ token: current.secret }, current.secret));
        if (!seen.active) failures.push(`token ${current.id} introspected inactive`);
        if (n % 3 === 2) {
          const r = await call((api) => api.rotateToken({}, current.secret));
          current = { id: r.token!.id, secret: r.secret };
        }
        ops++;
      } catch (e) {
        failures.push(String(e));
      }
    }
    return current;
  }

  async function keyStatus(env: Record<string, string>): Promise<KeyRow[]> {
    const r = await runCli(['key-status', '--json'], { ...set.env, ROTOR_DATA_DIR: '/nonexistent-rotor-dir', ...env });
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { keys: KeyRow[] }).keys;
  }

  it('restarts each replica twice under load with no failed call; a retry across the change gets the same successor; A drains to 0 and is removed', async () => {
    // Made under A: the clients' tokens, a rotation with an idempotency key, a JWT signing key.
    const tokens = await Promise.all(Array.from({ length: WORKERS }, (_, i) => newToken(`client ${i}`)));
    const retried = await newToken('retried');
    const retryKey = newKey();
    const first = await call((api) => api.rotateToken({ idempotencyKey: retryKey }, retried.secret));
    const jwtSubject = await newToken('jwt subject');
    const exchange = () =>
      call((api) =>
        api.exchangeToken({
          grantType: GRANT,
          subjectToken: jwtSubject.secret,
          subjectTokenType: ACCESS_TOKEN,
          requestedTokenType: JWT,
        }),
      );
    const jwtBefore = await exchange();
    const kid = JSON.parse(Buffer.from(jwtBefore.accessToken.split('.')[0]!, 'base64url').toString()).kid as string;
    const before = await keyStatus({ ROTOR_SECRET: A });
    expect(before.find((k) => k.key === ID_A)).toMatchObject({
      role: 'current',
      signing_keys: 1,
      idempotency_digests: 1,
    });

    const load = Promise.all(tokens.map((t) => worker(t)));
    const progressed = async (what: string, n = 10) => {
      const from = ops;
      await waitFor(`${n} more calls of the load (${what})`, () => ops >= from + n, 30_000);
    };
    await progressed('before the drill');
    // 1. Every replica learns B as a previous key, so it recognises what a replica with B current makes.
    for (const i of [0, 1]) {
      await restart(i, { ROTOR_SECRET: A, ROTOR_SECRET_PREVIOUS: B });
      await progressed(`replica ${i} knows B`);
    }
    // 2. B becomes current, A previous, one replica after the other.
    for (const i of [0, 1]) {
      await restart(i, { ROTOR_SECRET: B, ROTOR_SECRET_PREVIOUS: A });
      await progressed(`replica ${i} makes rows under B`);
    }
    // The retry of the rotation made under A, now answered under B: the same successor and secret.
    const again = await call((api) => api.rotateToken({ idempotencyKey: retryKey }, retried.secret));
    expect({ id: again.token!.id, same: again.secret === first.secret }).toEqual({ id: first.token!.id, same: true });
    await progressed('after the retry');
    stopping = true;
    const last = await load;
    expect(failures).toEqual([]);

    // Use every token still usable once more (each moves to B), then nothing depends on A.
    const BA = { ROTOR_SECRET: B, ROTOR_SECRET_PREVIOUS: A };
    await Promise.all(
      [...last, { id: first.token!.id, secret: first.secret }, jwtSubject].map((t) =>
        call((api) => api.introspectToken({ token: t.secret }, t.secret)),
      ),
    );
    await call((api) => api.listTokens({ ownerId: 'svc-drill' }, set.adminSecret));
    const drained = await waitFor(
      'rotor key-status to show no row under A',
      async () => {
        const s = await keyStatus(BA);
        return s.find((k) => k.key === ID_A)?.rows === 0 && s.find((k) => k.key === 'legacy') === undefined && s;
      },
      30_000,
    );
    expect(drained.find((k) => k.key === ID_B)).toMatchObject({ role: 'current', signing_keys: 1 });
    expect(drained.find((k) => k.key === ID_A)).toMatchObject({ role: 'previous', tokens: 0, idempotency_digests: 0 });
    // The signing key made under A was re-sealed under B: a new JWT is signed with it.
    const jwtAfter = await exchange();
    expect(JSON.parse(Buffer.from(jwtAfter.accessToken.split('.')[0]!, 'base64url').toString()).kid).toBe(kid);

    // 3. A removed: both replicas start with B alone and serve every token.
    for (const i of [0, 1]) await restart(i, { ROTOR_SECRET: B });
    const seen = await Promise.all(last.map((t) => call((api) => api.introspectToken({ token: t.secret }, t.secret))));
    expect(seen.every((s) => s.active)).toBe(true);
    const alone = await keyStatus({ ROTOR_SECRET: B });
    expect(alone.filter((k) => k.rows > 0).map((k) => k.key)).toEqual([ID_B]);
    // What A still keys has ended (rotated predecessors): only their reuse detection is gone.
    expect(alone.find((k) => k.key === ID_A)).toMatchObject({ role: 'unknown', rows: 0 });

    // A key the database does not know is refused, naming the rows that depend on B.
    const C = randomBytes(32).toString('hex');
    const refused = await runCli(
      ['serve'],
      { ...set.env, ROTOR_SECRET: C, ROTOR_GRPC_PORT: '0', ROTOR_HTTP_PORT: '0' },
      { timeoutMs: 20_000 },
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      new RegExp(
        `ROTOR_SECRET differs from the server key of this database \\(fingerprint mismatch\\); \\d+ rows depend on server keys that are not configured \\(key ${ID_B.replace(/[-]/g, '\\-')}: `,
      ),
    );
    expect(refused.stderr).toContain('ROTOR_SECRET_DROP_UNKNOWN=true');
    expect(refused.stderr).not.toContain(B);
    expect(refused.stderr).not.toContain(C);
  }, 300_000);
});
