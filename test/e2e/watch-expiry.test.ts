/**
 * WatchExpiry end to end over both ports: plain @grpc/grpc-js on the gRPC port, and the Connect
 * client on the HTTP port over HTTP/1.1 (connect-node createConnectTransport, httpVersion 1.1).
 *
 * Resume: a client killed mid-stream (the call aborted while events flow) that
 * reconnects with its last sequence gets exactly the missed events, then live ones: what the two
 * streams received together equals the event log of the selection, in order, nothing twice.
 * Also: selection and its authorization, input validation, event mapping, snapshots, threshold
 * filters, and shutdown ending streams with UNAVAILABLE.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryEventType, ExpiryService, type ExpiryEvent } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { connectClient } from '../support/connect-client.js';
import { TokenKind, TokenState } from '../../src/gen/rotor/v1/token_pb.js';
import { ENGINES, withEngines, type Engine } from '../support/engines.js';
import { connectApi, grpcApi, newKey, type Api, type Wire, type WatchStream } from '../support/rotor-api.js';
import { inMs, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const WIRES: Wire[] = ['grpc', 'connect'];

/** The event log of an owner after `after`, as (sequence, type) pairs in order. */
async function logOf(s: TestServer, ownerId: string, after: number) {
  const rows = await s.rotor.store.events.forSelection(
    { kind: 'owner', ownerId },
    after,
    Number.MAX_SAFE_INTEGER,
    10_000,
  );
  return rows.map((e) => `${e.sequence}:${e.type}:${e.tokenId}`);
}

const TYPE_NAME: Record<number, string> = {
  [ExpiryEventType.SNAPSHOT]: 'created',
  [ExpiryEventType.ROTATED]: 'rotated',
  [ExpiryEventType.REVOKED]: 'revoked',
  [ExpiryEventType.FAMILY_REVOKED]: 'family_revoked',
  [ExpiryEventType.EXPIRING_SOON]: 'expiring_soon',
  [ExpiryEventType.EXPIRED]: 'expired',
};
const asLog = (events: ExpiryEvent[]) =>
  events
    .filter((e) => e.type !== ExpiryEventType.HEARTBEAT)
    .map((e) => `${e.sequence}:${TYPE_NAME[e.type]}:${e.tokenId}`);

describe.each(withEngines(WIRES))('WatchExpiry over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;
  const open: WatchStream[] = [];
  const watch = (...args: Parameters<Api['watchExpiry']>) => {
    const w = api.watchExpiry(...args);
    open.push(w);
    return w;
  };

  beforeAll(async () => {
    s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
  });
  afterEach(async () => {
    for (const w of open.splice(0)) w.cancel();
    // The next test counts its own watchers.
    await waitForWatchers(s, 0);
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
  });

  async function create(ownerId: string, lifetime = 40 * DAY, scopes = ['rotor:rotate']) {
    const res = await api.createToken(
      { kind: TokenKind.SERVICE_ACCOUNT, ownerId, name: 'w', scopes, expiresAt: inMs(s.clock.now(), lifetime) },
      s.adminSecret,
    );
    return { id: res.token!.id, familyId: res.token!.familyId, secret: res.secret };
  }

  it('killed mid-stream, resumed with its last sequence: exactly the missed events, then live ones', async () => {
    const owner = `resume-${wire}`;
    const first = watch({ ownerId: owner }, s.adminSecret);
    // A live-only watch sends what commits after it joined the feed: wait for that before writing.
    await waitForWatchers(s, 1);
    const seed = await create(owner);
    await first.until((r) => r.length >= 1, 10_000, 'the first event');

    // Events keep coming while the client is killed; it remembers only what it received.
    let stop = false;
    const churn = (async () => {
      const made: string[] = [];
      while (!stop) made.push((await create(owner)).id);
      return made;
    })();
    await first.until((r) => r.length >= 10, 10_000, 'ten events');
    first.cancel();
    const seen = [...first.received];
    // The server notices the cancelled call and drops its watcher.
    await waitForWatchers(s, 0);
    const last = Number(seen[seen.length - 1]!.sequence);
    await new Promise((r) => setTimeout(r, 100)); // more events while disconnected
    stop = true;
    await churn;
    // Rotation, revocation and a scheduled threshold while disconnected, too.
    const rotated = await api.rotateToken({ idempotencyKey: newKey() }, seed.secret);
    await api.revokeToken({ id: rotated.token!.id }, s.adminSecret);
    s.clock.advance(10 * DAY + HOUR);
    await s.rotor.expiry.scheduler.runOnce();

    const second = watch({ ownerId: owner, afterSequence: BigInt(last) }, s.adminSecret);
    const missed = await logOf(s, owner, last);
    expect(missed.length).toBeGreaterThan(3);
    await second.until((r) => r.length >= missed.length, 10_000, 'the missed events');
    expect(asLog(second.received)).toEqual(missed);

    // Then live, without a gap or a repeat.
    const live = await create(owner);
    await second.until((r) => r.some((e) => e.tokenId === live.id), 10_000, 'the live event');
    expect(asLog([...seen, ...second.received])).toEqual(await logOf(s, owner, Number(seen[0]!.sequence) - 1));
    expect(second.done).toBe(false);
  });

  it('maps each log event: ROTATED names the successor, REVOKED and FAMILY_REVOKED carry state and reason', async () => {
    const owner = `map-${wire}`;
    const t = await create(owner);
    const own = watch({}, t.secret); // empty selection: the caller's own token
    const fam = watch({ familyId: t.familyId }, s.adminSecret);
    await waitForWatchers(s, 2);
    const rotated = await api.rotateToken({ idempotencyKey: newKey() }, t.secret);
    const successorId = rotated.token!.id;
    const ev = await own.next();
    expect(ev).toMatchObject({
      type: ExpiryEventType.ROTATED,
      tokenId: t.id,
      familyId: t.familyId,
      successorId,
      state: TokenState.ROTATED,
      reason: 'rotated',
    });
    expect(timestampMs(ev.expiresAt!)).toBeGreaterThan(s.clock.now());
    // Its bearer stopped authenticating with the rotation (no overlap window): the stream ends
    // right after the ROTATED event. (Awaited first: an event logged before the feed's next read
    // would reach the stream too, docs/watch-expiry.md.)
    const f = await own.ended;
    expect([f?.code, f?.rawMessage]).toEqual([
      Code.Unauthenticated,
      'bearer token has been rotated and its overlap window has ended; reconnect with a valid token',
    ]);
    expect(own.received.map((e) => e.type)).toEqual([ExpiryEventType.ROTATED]);
    await api.revokeFamily({ familyId: t.familyId }, s.adminSecret);
    // Every member, the rotated one included, is revoked and gets its own FAMILY_REVOKED.
    await fam.until(
      (r) => r.filter((e) => e.type === ExpiryEventType.FAMILY_REVOKED).length === 2,
      10_000,
      'two FAMILY_REVOKED',
    );
    const row = (e: ExpiryEvent) => [e.type, e.tokenId, e.state, e.reason];
    expect(fam.received.slice(0, 2).map(row)).toEqual([
      [ExpiryEventType.ROTATED, t.id, TokenState.ROTATED, 'rotated'],
      [ExpiryEventType.SNAPSHOT, successorId, TokenState.ACTIVE, 'rotated'],
    ]);
    expect(new Set(fam.received.slice(2).map((e) => JSON.stringify(row(e))))).toEqual(
      new Set(
        [t.id, successorId].map((id) =>
          JSON.stringify([ExpiryEventType.FAMILY_REVOKED, id, TokenState.REVOKED, 'family_revoked']),
        ),
      ),
    );
    const seqs = fam.received.map((e) => e.sequence);
    expect([...seqs].sort((a, b) => (a < b ? -1 : 1))).toEqual(seqs);
  });

  it('include_snapshot: one SNAPSHOT per token carrying the log position; resuming after it skips nothing', async () => {
    const owner = `snap-${wire}`;
    const a = await create(owner);
    const b = await create(owner);
    await api.revokeToken({ id: b.id }, s.adminSecret);
    const w = watch({ ownerId: owner, includeSnapshot: true }, s.adminSecret);
    await w.until((r) => r.length >= 2, 10_000, 'two snapshots');
    const snaps = w.received.slice(0, 2);
    expect(snaps.every((e) => e.type === ExpiryEventType.SNAPSHOT)).toBe(true);
    expect(new Map(snaps.map((e) => [e.tokenId, e.state]))).toEqual(
      new Map([
        [a.id, TokenState.ACTIVE],
        [b.id, TokenState.REVOKED],
      ]),
    );
    const position = snaps[0]!.sequence;
    expect(snaps[1]!.sequence).toBe(position);
    expect(position).toBe(BigInt(await s.rotor.store.events.latestSequence()));
    w.cancel();
    // Changes after the snapshot arrive when resuming from its sequence.
    await api.revokeToken({ id: a.id }, s.adminSecret);
    const again = watch({ ownerId: owner, afterSequence: position }, s.adminSecret);
    const [ev] = await again.until((r) => r.length >= 1);
    expect(ev).toMatchObject({ type: ExpiryEventType.REVOKED, tokenId: a.id, state: TokenState.REVOKED });
  });

  it('thresholds filter EXPIRING_SOON; a threshold the server does not schedule is INVALID_ARGUMENT naming the allowed ones', async () => {
    const owner = `thr-${wire}`;
    const t = await create(owner, 2 * DAY);
    const hourOnly = watch({ tokenIds: [t.id], thresholds: [{ seconds: 3600n }] }, s.adminSecret);
    const all = watch({ tokenIds: [t.id] }, s.adminSecret);
    await waitForWatchers(s, 2);
    s.clock.advance(DAY + HOUR);
    await s.rotor.expiry.scheduler.runOnce();
    await all.until((r) => r.length >= 1);
    s.clock.advance(DAY - 2 * HOUR);
    await s.rotor.expiry.scheduler.runOnce();
    await all.until((r) => r.length >= 2);
    await hourOnly.until((r) => r.length >= 1);
    expect(all.received.map((e) => [e.type, e.threshold?.seconds])).toEqual([
      [ExpiryEventType.EXPIRING_SOON, 86400n],
      [ExpiryEventType.EXPIRING_SOON, 3600n],
    ]);
    expect(hourOnly.received.map((e) => [e.type, e.threshold?.seconds, e.state])).toEqual([
      [ExpiryEventType.EXPIRING_SOON, 3600n, TokenState.ACTIVE],
    ]);
    s.clock.advance(2 * HOUR);
    await s.rotor.expiry.scheduler.runOnce();
    const [, , expired] = await all.until((r) => r.length >= 3);
    expect(expired).toMatchObject({ type: ExpiryEventType.EXPIRED, tokenId: t.id, state: TokenState.EXPIRED });
    s.clock.advance(-4 * DAY); // back, so the admin token stays valid for the next tests

    const bad = watch({ thresholds: [{ seconds: 7200n }] }, s.adminSecret);
    const f = await bad.ended;
    expect([f?.code, f?.rawMessage]).toEqual([
      Code.InvalidArgument,
      'thresholds: 2h not scheduled by this server; allowed: 30d, 7d, 1d, 1h',
    ]);
  });

  it('ends a stream once its bearer token is revoked, after the revocation event; streams of other bearers go on', async () => {
    const owner = `cred-${wire}`;
    const mine = await create(owner, 10 * DAY, ['rotor:rotate']);
    const own = watch({ ownerId: owner }, mine.secret);
    const admin = watch({ ownerId: owner }, s.adminSecret);
    await waitForWatchers(s, 2);
    await api.revokeToken({ id: mine.id }, s.adminSecret);
    const f = await own.ended;
    expect([f?.code, f?.rawMessage]).toEqual([
      Code.Unauthenticated,
      'bearer token has been revoked; reconnect with a valid token',
    ]);
    expect(own.received.filter((e) => e.type !== ExpiryEventType.HEARTBEAT).map((e) => [e.type, e.tokenId])).toEqual([
      [ExpiryEventType.REVOKED, mine.id],
    ]);
    await admin.until(
      (r) => r.some((e) => e.type === ExpiryEventType.REVOKED),
      10_000,
      'the revocation on the admin stream',
    );
    expect(admin.done).toBe(false);
    await waitForWatchers(s, 1);
    // A new stream with the revoked token is refused when it opens.
    const again = await watch({ ownerId: owner }, mine.secret).ended;
    expect([again?.code, again?.rawMessage]).toEqual([Code.Unauthenticated, 'bearer token has been revoked']);
  });

  it('ends a stream when its bearer expires, on the clock alone (no scheduler runs here)', async () => {
    const owner = `exp-${wire}`;
    const mine = await create(owner, HOUR, ['rotor:rotate']);
    const own = watch({}, mine.secret);
    await waitForWatchers(s, 1);
    s.clock.advance(HOUR);
    const f = await own.ended;
    expect([f?.code, f?.rawMessage]).toEqual([
      Code.Unauthenticated,
      'bearer token has expired; reconnect with a valid token',
    ]);
  });

  it('refuses bad selections with a clear code and message', async () => {
    const mine = await create(`sel-${wire}`, 10 * DAY, ['rotor:rotate']);
    const other = await create(`sel-other-${wire}`);
    const cases: [Parameters<Api['watchExpiry']>[0], string | undefined, Code, string][] = [
      [
        { ownerId: 'x', familyId: mine.familyId },
        s.adminSecret,
        Code.InvalidArgument,
        'set at most one of token_ids, owner_id, family_id',
      ],
      [{ tokenIds: ['nope'] }, s.adminSecret, Code.InvalidArgument, 'token_ids: is not a valid id'],
      [{ tokenIds: ['tok_unknown1'] }, s.adminSecret, Code.NotFound, 'token tok_unknown1 not found'],
      [{ familyId: 'fam_unknown1' }, s.adminSecret, Code.NotFound, 'family fam_unknown1 not found'],
      [
        { thresholds: [{ seconds: 0n }] },
        s.adminSecret,
        Code.InvalidArgument,
        'thresholds: each must be a positive whole number of seconds',
      ],
      [
        { thresholds: [{ seconds: 3600n, nanos: 5 }] },
        s.adminSecret,
        Code.InvalidArgument,
        'thresholds: each must be a positive whole number of seconds',
      ],
      // Past 2^53 a sequence is no JavaScript integer; the largest uint64 and the first unsafe value.
      [{ afterSequence: 2n ** 64n - 1n }, s.adminSecret, Code.InvalidArgument, 'after_sequence is out of range'],
      [{ afterSequence: 2n ** 53n }, s.adminSecret, Code.InvalidArgument, 'after_sequence is out of range'],
      [
        { tokenIds: [other.id] },
        mine.secret,
        Code.PermissionDenied,
        'watching tokens of another owner needs rotor:admin',
      ],
      [
        { ownerId: `sel-other-${wire}` },
        mine.secret,
        Code.PermissionDenied,
        'watching tokens of another owner needs rotor:admin',
      ],
      [
        { familyId: other.familyId },
        mine.secret,
        Code.PermissionDenied,
        'watching tokens of another owner needs rotor:admin',
      ],
      [{}, undefined, Code.Unauthenticated, 'missing bearer token'],
    ];
    for (const [req, bearer, code, message] of cases) {
      const f = await watch(req, bearer).ended;
      expect(
        [f?.code, f?.rawMessage],
        JSON.stringify(req, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
      ).toEqual([code, message]);
    }
    // Its own owner's tokens are fine for a non-admin.
    const ok = watch({ ownerId: `sel-${wire}` }, mine.secret);
    await waitForWatchers(s, 1); // registered: past every check that could refuse it
    expect(ok.done).toBe(false);
  });
});

describe.each(ENGINES)('WatchExpiry over gRPC-Web on the HTTP port on %s', (engine: Engine) => {
  it('streams events like the other protocols', async () => {
    const s = await startTestServer({ ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0' }, { engine });
    const api = grpcApi(s);
    const abort = new AbortController();
    try {
      const created = await api.createToken(
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'web',
          name: 'w',
          scopes: ['rotor:rotate'],
          expiresAt: inMs(s.clock.now(), DAY),
        },
        s.adminSecret,
      );
      const client = connectClient(ExpiryService, s.httpUrl, s.adminSecret, { grpcWeb: true, binary: true });
      const events: ExpiryEvent[] = [];
      const done = (async () => {
        for await (const e of client.watchExpiry({ ownerId: 'web', afterSequence: 0n }, { signal: abort.signal })) {
          events.push(e);
          if (events.length === 2) return;
        }
      })();
      await api.revokeToken({ id: created.token!.id }, s.adminSecret);
      await done;
      expect(events.map((e) => [e.type, e.tokenId])).toEqual([
        [ExpiryEventType.SNAPSHOT, created.token!.id],
        [ExpiryEventType.REVOKED, created.token!.id],
      ]);
    } finally {
      abort.abort();
      api.close();
      await s.stop();
    }
  });
});

describe.each(withEngines(WIRES))('shutdown over %s on %s', (wire, engine) => {
  it('ends open streams with UNAVAILABLE before the servers close, without waiting for the grace period', async () => {
    const s = await startTestServer({}, { engine });
    const api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
    try {
      const streams = [api.watchExpiry({ ownerId: 'admin' }, s.adminSecret), api.watchExpiry({}, s.adminSecret)];
      await waitForWatchers(s, 2);
      // A grace far past the test's 30 s timeout: waiting for it would fail the test, whatever the load.
      await s.stop(600_000);
      const ends = await Promise.all(streams.map((w) => w.ended));
      expect(ends.map((f) => [f?.code, f?.rawMessage])).toEqual(
        streams.map(() => [
          Code.Unavailable,
          'server is shutting down; reconnect with after_sequence set to the last sequence received',
        ]),
      );
    } finally {
      api.close();
    }
  });
});
