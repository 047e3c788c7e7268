/**
 * Caps on open WatchExpiry streams (docs/watch-expiry.md, "Limits") over grpc-js on the gRPC port
 * and the Connect client on the HTTP port: the stream past the cap per bearer token, per owner id
 * or per process is refused with RESOURCE_EXHAUSTED naming the cap; a stream that ends (the client
 * cancels, the server ends it) gives its slot back; GET /metrics counts refusals by cap.
 * The tokens hold no scope: any holder may watch its own token, and that is what the caps bound.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { withEngines } from '../support/engines.js';
import { connectApi, grpcApi, type Api, type RpcFailure, type WatchStream } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

const PER_TOKEN = 2;
const PER_OWNER = 3;
const PER_PROCESS = 5;
const TOKEN_FULL = `too many WatchExpiry streams for this token (limit ${PER_TOKEN}, ROTOR_WATCH_MAX_STREAMS_PER_TOKEN); close one or reuse a stream`;
const OWNER_FULL = `too many WatchExpiry streams for this token's owner (limit ${PER_OWNER}, ROTOR_WATCH_MAX_STREAMS_PER_OWNER); close one or reuse a stream`;
const PROCESS_FULL = `too many WatchExpiry streams on this server (limit ${PER_PROCESS}, ROTOR_WATCH_MAX_STREAMS_PER_PROCESS); retry later or on another replica`;

describe.each(withEngines(['grpc', 'connect'] as const))('WatchExpiry stream caps over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;
  const open: WatchStream[] = [];
  let owners = 0;

  beforeAll(async () => {
    s = await startTestServer(
      {
        ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0',
        ROTOR_WATCH_MAX_STREAMS_PER_TOKEN: String(PER_TOKEN),
        ROTOR_WATCH_MAX_STREAMS_PER_OWNER: String(PER_OWNER),
        ROTOR_WATCH_MAX_STREAMS_PER_PROCESS: String(PER_PROCESS),
      },
      { engine },
    );
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
  });
  afterEach(async () => {
    for (const w of open.splice(0)) w.cancel();
    await waitForWatchers(s, 0);
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
  });

  /** A token with no scope at all, of `ownerId` (a fresh owner when omitted). */
  async function mint(ownerId = `caps-${wire}-${++owners}`) {
    const r = await api.createToken(
      { kind: TokenKind.SERVICE_ACCOUNT, ownerId, name: 'w', scopes: [], expiresAt: inMs(s.clock.now(), 3_600_000) },
      s.adminSecret,
    );
    issuedSecrets.add(r.secret);
    return { id: r.token!.id, ownerId, secret: r.secret };
  }
  /** Opens a stream on the holder's own token. */
  const watch = (secret: string) => {
    const w = api.watchExpiry({}, secret);
    open.push(w);
    return w;
  };
  /** Opens `n` streams and waits until the feed holds `total` (so they count before the next opens). */
  async function fill(secret: string, n: number, total: number): Promise<WatchStream[]> {
    const ws = Array.from({ length: n }, () => watch(secret));
    await waitForWatchers(s, total);
    return ws;
  }
  /** Opens one stream more, which must be refused (fails at once if the feed takes it in instead). */
  async function refused(secret: string): Promise<RpcFailure> {
    const before = s.rotor.expiry.feed.watchers;
    const w = watch(secret);
    while (!w.done) {
      if (s.rotor.expiry.feed.watchers > before)
        throw new Error(`the stream was accepted (${before + 1} streams open), not refused`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const f = await w.ended;
    expect(f, 'the stream ended without a failure').toBeDefined();
    return f!;
  }
  const failureOf = (f: RpcFailure) => [Code[f.code], f.rawMessage, f.meta('rotor-error')];

  it(`per bearer token: stream ${PER_TOKEN + 1} is refused; after one closes, a new one is accepted`, async () => {
    const t = await mint();
    const [first] = await fill(t.secret, PER_TOKEN, PER_TOKEN);
    expect(failureOf(await refused(t.secret))).toEqual(['ResourceExhausted', TOKEN_FULL, 'resource_exhausted']);
    // Another token of the same owner is not held back by this one's cap.
    const sibling = await mint(t.ownerId);
    await fill(sibling.secret, 1, PER_TOKEN + 1);

    first!.cancel();
    await waitForWatchers(s, PER_TOKEN);
    const again = watch(t.secret);
    await waitForWatchers(s, PER_TOKEN + 1);
    expect(again.done).toBe(false);
    expect(failureOf(await refused(t.secret))).toEqual(['ResourceExhausted', TOKEN_FULL, 'resource_exhausted']);
  });

  it(`per owner: two bearers of one owner share ${PER_OWNER} streams; a stream ended by the server gives its slot back`, async () => {
    const a = await mint();
    const b = await mint(a.ownerId);
    const a1 = await fill(a.secret, PER_TOKEN, PER_TOKEN);
    const [b1] = await fill(b.secret, PER_OWNER - PER_TOKEN, PER_OWNER);
    // b is under its own cap, its owner is not.
    expect(failureOf(await refused(b.secret))).toEqual(['ResourceExhausted', OWNER_FULL, 'resource_exhausted']);
    // Another owner's token may open.
    const other = await mint();
    const [o1] = await fill(other.secret, 1, PER_OWNER + 1);
    o1!.cancel();
    await waitForWatchers(s, PER_OWNER);

    // The client cancels one of b's streams: b may open one again.
    b1!.cancel();
    await waitForWatchers(s, PER_OWNER - 1);
    await fill(b.secret, 1, PER_OWNER);
    expect(failureOf(await refused(b.secret))).toEqual(['ResourceExhausted', OWNER_FULL, 'resource_exhausted']);

    // The server ends a's streams (its bearer is revoked): their slots go back to the owner.
    await api.revokeToken({ id: a.id }, s.adminSecret);
    for (const w of a1) expect((await w.ended)?.code).toBe(Code.Unauthenticated);
    await waitForWatchers(s, PER_OWNER - PER_TOKEN);
    await fill(b.secret, 1, PER_OWNER - PER_TOKEN + 1);
  });

  it(`per process: stream ${PER_PROCESS + 1} of any bearer is refused; after one closes, a new one is accepted`, async () => {
    const holders = await Promise.all(Array.from({ length: PER_PROCESS + 1 }, () => mint()));
    const first: WatchStream[] = [];
    for (const [i, h] of holders.slice(0, PER_PROCESS).entries()) first.push(...(await fill(h.secret, 1, i + 1)));
    const late = holders[PER_PROCESS]!;
    expect(failureOf(await refused(late.secret))).toEqual(['ResourceExhausted', PROCESS_FULL, 'resource_exhausted']);
    first[0]!.cancel();
    await waitForWatchers(s, PER_PROCESS - 1);
    await fill(late.secret, 1, PER_PROCESS);
    expect(failureOf(await refused(holders[0]!.secret))).toEqual([
      'ResourceExhausted',
      PROCESS_FULL,
      'resource_exhausted',
    ]);
  });

  it('GET /metrics counts refusals by cap (no token or owner in a label) and gauges the open streams', async () => {
    const scrape = async () => {
      const text = await (await fetch(`${s.httpUrl}/metrics`)).text();
      const refusals = [...text.matchAll(/^rotor_watch_streams_refused_total(\{.*\}) (\d+)$/gm)].map(
        (m) => [m[1]!, Number(m[2])] as const,
      );
      const streams = Number(/^rotor_watch_streams (\d+)$/m.exec(text)?.[1]);
      return { text, refusals: new Map(refusals), streams };
    };
    const before = await scrape();
    expect([...before.refusals.keys()]).toEqual(['{cap="token"}', '{cap="owner"}', '{cap="process"}']);

    const t = await mint();
    const sibling = await mint(t.ownerId);
    await fill(t.secret, PER_TOKEN, PER_TOKEN);
    await refused(t.secret);
    await refused(t.secret);
    await fill(sibling.secret, PER_OWNER - PER_TOKEN, PER_OWNER);
    await refused(sibling.secret);
    const others = await Promise.all(Array.from({ length: PER_PROCESS - PER_OWNER + 1 }, () => mint()));
    for (const [i, o] of others.slice(0, -1).entries()) await fill(o.secret, 1, PER_OWNER + i + 1);
    await refused(others[others.length - 1]!.secret);

    const after = await scrape();
    const delta = (cap: string) => after.refusals.get(`{cap="${cap}"}`)! - before.refusals.get(`{cap="${cap}"}`)!;
    expect([delta('token'), delta('owner'), delta('process')]).toEqual([2, 1, 1]);
    expect(after.streams).toBe(PER_PROCESS);
    // Refused streams still count as RPCs ended with their code.
    expect(after.text).toMatch(
      /^rotor_rpc_errors_total\{method="rotor\.v1\.ExpiryService\/WatchExpiry",error="resource_exhausted"\} [1-9]/m,
    );
    for (const leak of [t.id, sibling.id, t.ownerId, ...others.map((o) => o.ownerId)])
      expect(after.text).not.toContain(leak);
  });
});
