/**
 * Fuzzes WatchExpiry (docs/watch-expiry.md) on both ports: random WatchExpiryRequest messages
 * (ids of the fixture's tokens and families, unknown and malformed ids, owners, thresholds
 * scheduled or not and out of range, any after_sequence, snapshot or not) with the admin's bearer,
 * another owner's, none or garbage, over grpc-js and the Connect client (binary); and raw bodies
 * (test/fuzz/proto-messages.ts: mutated encodings, random bytes, envelopes that lie) over HTTP/2
 * to the gRPC port and as Connect streaming (`application/connect+proto` and `+json`) to the HTTP
 * port. Each stream either ends with a code src/api/connect-errors.ts produces (never INTERNAL,
 * UNKNOWN or UNAVAILABLE; the requests whose answer the doc's table fixes get exactly that), or
 * goes live (its watcher in the feed has sent the snapshot and the replay) and is then cancelled.
 * Watching writes nothing: the token and event counts never change; the server still serves.
 */
import * as http2 from 'node:http2';
import { create, toJson } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryService, WatchExpiryRequestSchema } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../support/connect-client.js';
import { grpcClient } from '../support/grpc-client.js';
import { grpcEnvelope, grpcOutcome } from '../support/raw-grpc.js';
import { grpcApi, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';
import { anyText, longText, UNKNOWN_SECRETS } from './arbitraries.js';
import { protoBody } from './proto-messages.js';
import { DOCUMENTED_CODES, DOCUMENTED_CODE_NAMES, expectServing, fuzzParams, rowCounts } from './support.js';

/** The server's scheduled thresholds (README default 30d,7d,1d,1h), in seconds. */
const SCHEDULED = [30 * 86400, 7 * 86400, 86400, 3600];

type Bearer = 'admin' | 'alice' | 'none' | 'garbage';
const bearer: fc.Arbitrary<Bearer> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom<Bearer>('admin', 'alice') },
  { weight: 1, arbitrary: fc.constantFrom<Bearer>('none', 'garbage') },
);

/** How a stream ended, or `live`: it joined the feed and sent its snapshot and replay. */
type Outcome = { kind: 'live' } | { kind: 'ended'; code: Code | undefined; message: string };

/** Wire names (`invalid_argument`) → Code: the documented ones and `unimplemented` (framing, see below). */
function codeOfName(name: unknown): Code | undefined {
  if (name === 'unimplemented') return Code.Unimplemented;
  const i = DOCUMENTED_CODE_NAMES.indexOf(String(name));
  return i < 0 ? undefined : DOCUMENTED_CODES[i];
}

const lyingEnvelope = fc.oneof(
  { weight: 6, arbitrary: protoBody(WatchExpiryRequestSchema).map((b) => grpcEnvelope(0, b)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.uint8Array({ maxLength: 30 }), fc.nat(), fc.integer({ min: 0, max: 255 }))
      .map(([p, n, f]) => grpcEnvelope(f, p, n)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b)) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.uint8Array({ maxLength: 10 }), fc.uint8Array({ maxLength: 10 }))
      .map(([a, b]) => Buffer.concat([grpcEnvelope(0, a), grpcEnvelope(0, b)])),
  },
);

describe('fuzz: WatchExpiry requests on sqlite', () => {
  let s: TestServer;
  let api: Api;
  let grpcExpiry: ReturnType<typeof grpcClient<typeof ExpiryService>>;
  let session: http2.ClientHttp2Session;
  let alice: { id: string; familyId: string; secret: string };
  let adminId: string;
  let adminFamily: string;

  beforeAll(async () => {
    s = await startTestServer({ ROTOR_WATCH_HEARTBEAT_SECONDS: '1' });
    api = grpcApi(s);
    grpcExpiry = grpcClient(ExpiryService, s.grpcAddress);
    session = http2.connect(`http://${s.grpcAddress}`);
    const created = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'alice',
        name: 'alice',
        scopes: ['read'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
      },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    alice = { id: created.token!.id, familyId: created.token!.familyId, secret: created.secret };
    const admin = await api.introspectToken({ token: s.adminSecret }, s.adminSecret);
    adminId = admin.tokenId;
    adminFamily = (await api.getToken({ id: adminId }, s.adminSecret)).token!.familyId;
    // Some history to replay: a rotation and a revocation of alice's tokens.
    const other = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'alice',
        name: 'alice-2',
        scopes: ['read', 'rotor:rotate'],
        expiresAt: inMs(s.clock.now(), 86_400_000),
      },
      s.adminSecret,
    );
    issuedSecrets.add(other.secret);
    const rotated = await api.rotateToken({}, other.secret);
    issuedSecrets.add(rotated.secret);
    await api.revokeToken({ id: rotated.token!.id }, s.adminSecret);
  });
  afterAll(async () => {
    session?.close();
    grpcExpiry?.close();
    api?.close();
    await s?.stop();
  });

  function authHeader(b: Bearer): string | undefined {
    if (b === 'admin') return `Bearer ${s.adminSecret}`;
    if (b === 'alice') return `Bearer ${alice.secret}`;
    if (b === 'garbage') return `Bearer ${UNKNOWN_SECRETS[0]}`;
    return undefined;
  }

  /** Requests built from the fixture: known ids, unknown and malformed ones, thresholds at and off the schedule. */
  function request() {
    const id = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(alice.id, adminId, 'tok_0000000000000000000000') },
      { weight: 1, arbitrary: fc.constantFrom(alice.familyId, 'tok_', 'TOK_x', `tok_${'a'.repeat(61)}`) },
      { weight: 1, arbitrary: anyText },
    );
    // Mostly one selector or none, so that many requests get past the first check.
    const tokenIds = fc.oneof(
      { weight: 8, arbitrary: fc.constant<string[]>([]) },
      { weight: 4, arbitrary: fc.array(id, { minLength: 1, maxLength: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom<string[]>(Array(100).fill(alice.id), Array(101).fill(alice.id)) },
    );
    const ownerId = fc.oneof(
      { weight: 14, arbitrary: fc.constant('') },
      { weight: 3, arbitrary: fc.constantFrom('alice', 'admin', 'nobody') },
      { weight: 1, arbitrary: anyText },
      { weight: 1, arbitrary: longText },
    );
    const familyId = fc.oneof(
      { weight: 14, arbitrary: fc.constant('') },
      { weight: 3, arbitrary: fc.constantFrom(alice.familyId, adminFamily, 'fam_0000000000000000000000', alice.id) },
      { weight: 1, arbitrary: anyText },
    );
    type Duration = { seconds: bigint; nanos: number };
    const duration: fc.Arbitrary<Duration> = fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...SCHEDULED).map((n) => ({ seconds: BigInt(n), nanos: 0 })) },
      {
        weight: 1,
        arbitrary: fc.record({
          seconds: fc.oneof(
            fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
            fc.constantFrom(0n, 1n, -1n, 7200n, 315_360_000n, 315_360_001n, 315_576_000_000n),
          ),
          nanos: fc.oneof(fc.constant(0), fc.integer()),
        }),
      },
    );
    const thresholds: fc.Arbitrary<Duration[]> = fc.oneof(
      { weight: 3, arbitrary: fc.constant<Duration[]>([]) },
      { weight: 3, arbitrary: fc.array(duration, { maxLength: 4 }) },
      {
        weight: 1,
        arbitrary: fc
          .constantFrom(16, 17)
          .map((n): { seconds: bigint; nanos: number }[] => Array(n).fill({ seconds: 3600n, nanos: 0 })),
      },
    );
    const afterSequence = fc.option(
      fc.oneof(
        { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: 20n }) },
        { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
        { weight: 1, arbitrary: fc.constantFrom(2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n) },
      ),
      { nil: undefined },
    );
    return fc.record({ tokenIds, ownerId, familyId, thresholds, afterSequence, includeSnapshot: fc.boolean() });
  }

  /**
   * Runs one stream until it ends or goes live (then cancels it and waits until it left the feed).
   * `open` starts it and resolves when it ends; `cancel` aborts it.
   */
  async function outcomeOf(
    open: () => Promise<{ code: Code | undefined; message: string }>,
    cancel: () => void,
  ): Promise<Outcome> {
    let settled = false;
    const ended = open().then((r): Outcome => ({ kind: 'ended', ...r }));
    const live = (async (): Promise<Outcome | undefined> => {
      // The feed's subscriptions are private; `live` is set once the snapshot and replay were sent.
      const subs = (s.rotor.expiry.feed as unknown as { subs: Set<{ live: boolean }> }).subs;
      const deadline = Date.now() + 20_000;
      while (!settled) {
        if (subs.size === 1 && [...subs][0]!.live) return { kind: 'live' };
        if (Date.now() > deadline) throw new Error('the stream neither ended nor went live');
        await new Promise((r) => setTimeout(r, 2));
      }
      return undefined;
    })();
    const first = await Promise.race([ended, live.then((o) => o ?? ended)]);
    settled = true;
    if (first.kind === 'live') {
      cancel();
      await Promise.allSettled([ended, live]);
    } else {
      await live;
    }
    await waitForWatchers(s, 0);
    return first;
  }

  function expectDocumented(o: Outcome): void {
    if (o.kind === 'ended' && o.code !== undefined)
      expect(DOCUMENTED_CODES, `${Code[o.code]} ${o.message}`).toContain(o.code);
  }

  /**
   * The transports answer a server-streaming call without a request message, or with two,
   * UNIMPLEMENTED before Rotor sees it (grpc-js: "Received no request message…", connect-node:
   * "protocol error: …"): not a Rotor code, but not INTERNAL either.
   */
  function expectDocumentedOrFraming(o: Outcome): void {
    if (
      o.kind === 'ended' &&
      o.code === Code.Unimplemented &&
      /^(Received (no|a second) request message|protocol error: (received extra input message|missing input message))/.test(
        o.message,
      )
    )
      return;
    expectDocumented(o);
  }

  it('typed requests over grpc-js and Connect: a documented code, or a live stream; nothing written', async () => {
    const connect = connectClient(ExpiryService, s.httpUrl, undefined, { binary: true });
    const seen = { live: 0, ended: 0 };
    const reasons = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(request(), bearer, fc.constantFrom('grpc', 'connect'), async (req, who, via) => {
        const before = await rowCounts(s);
        const auth = authHeader(who);
        let cancel = () => {};
        const open = (): Promise<{ code: Code | undefined; message: string }> => {
          if (via === 'grpc') {
            const call = grpcExpiry.stream('watchExpiry', req, {
              token: auth === undefined ? undefined : auth.slice('Bearer '.length),
            });
            cancel = () => call.cancel();
            return new Promise((resolve) => {
              call.on('data', () => undefined);
              call.on('error', (e: { code: number; details: string }) =>
                resolve({ code: e.code as Code, message: e.details }),
              );
              call.on('end', () => resolve({ code: undefined, message: '' }));
            });
          }
          const abort = new AbortController();
          cancel = () => abort.abort();
          return (async () => {
            try {
              for await (const _ of connect.watchExpiry(req, {
                signal: abort.signal,
                headers: auth === undefined ? {} : { authorization: auth },
              }));
              return { code: undefined, message: '' };
            } catch (e) {
              const ce = ConnectError.from(e);
              return { code: ce.code, message: ce.rawMessage };
            }
          })();
        };
        const o = await outcomeOf(open, () => cancel());
        seen[o.kind]++;
        const why =
          o.kind === 'live'
            ? 'live'
            : `${o.code === undefined ? 'ok' : Code[o.code]} ${o.message.replace(/(tok|fam)_\w+/g, '<id>')}`;
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        expectDocumented(o);
        // The rows of the doc's table that do not depend on the fixture's state.
        const selectors = [req.tokenIds.length > 0, req.ownerId !== '', req.familyId !== ''].filter(Boolean).length;
        if (who === 'none' || who === 'garbage') expect(o).toMatchObject({ code: Code.Unauthenticated });
        else if (selectors > 1) expect(o).toMatchObject({ kind: 'ended', code: Code.InvalidArgument });
        else if (req.thresholds.length > 16 || req.tokenIds.length > 100)
          expect(o).toMatchObject({ code: Code.InvalidArgument });
        expect(await rowCounts(s)).toEqual(before);
      }),
      fuzzParams(150),
    );
    console.log('WatchExpiry typed fuzz:', Object.fromEntries([...reasons].sort()));
    // The runs reached every kind of answer: live streams and each class of refusal.
    expect(seen.live).toBeGreaterThan(10);
    const codes = new Set([...reasons.keys()].map((r) => r.split(' ')[0]));
    for (const c of ['InvalidArgument', 'NotFound', 'PermissionDenied', 'Unauthenticated']) expect(codes).toContain(c);
  });

  it('raw bodies over HTTP/2 to the gRPC port: a documented code, or a live stream; nothing written', async () => {
    await fc.assert(
      fc.asyncProperty(lyingEnvelope, bearer, async (body, who) => {
        const before = await rowCounts(s);
        const auth = authHeader(who);
        let req: http2.ClientHttp2Stream | undefined;
        const o = await outcomeOf(
          () =>
            new Promise((resolve, reject) => {
              const headers: http2.OutgoingHttpHeaders = {
                ':method': 'POST',
                ':path': '/rotor.v1.ExpiryService/WatchExpiry',
                'content-type': 'application/grpc',
                te: 'trailers',
              };
              if (auth !== undefined) headers.authorization = auth;
              req = session.request(headers);
              const outcome = grpcOutcome(req);
              req.on('close', () => {
                const { status, message } = outcome;
                if (status === undefined && !req!.rstCode) reject(new Error('no grpc-status'));
                resolve({ code: status === 0 || status === undefined ? undefined : (status as Code), message });
              });
              req.on('error', () => undefined);
              req.end(body);
            }),
          () => req?.close(http2.constants.NGHTTP2_CANCEL),
        );
        expectDocumentedOrFraming(o);
        expect(await rowCounts(s)).toEqual(before);
      }),
      fuzzParams(100),
    );
  });

  it('raw Connect streaming bodies (application/connect+proto, +json): a documented code, or a live stream', async () => {
    // Proto3 JSON of a typed request; durations outside the JSON range are written by hand.
    const jsonRequest = request().map((r) => {
      try {
        return Buffer.from(JSON.stringify(toJson(WatchExpiryRequestSchema, create(WatchExpiryRequestSchema, r))));
      } catch {
        return Buffer.from(
          JSON.stringify({
            ...r,
            afterSequence: r.afterSequence?.toString(),
            thresholds: r.thresholds.map((d) => `${d.seconds}.${Math.abs(d.nanos)}s`),
          }),
        );
      }
    });
    const jsonBody = fc.oneof(
      { weight: 3, arbitrary: jsonRequest.map((b) => grpcEnvelope(0, b)) },
      {
        weight: 1,
        arbitrary: fc
          .jsonValue({ maxDepth: 3 })
          .map((v) => Buffer.from(JSON.stringify(v)))
          .map((b) => grpcEnvelope(0, b)),
      },
      { weight: 1, arbitrary: lyingEnvelope },
    );
    const body = fc.oneof(
      fc.tuple(fc.constant('application/connect+proto'), lyingEnvelope),
      fc.tuple(fc.constant('application/connect+json'), jsonBody),
    );
    await fc.assert(
      fc.asyncProperty(body, bearer, async ([contentType, payload], who) => {
        const before = await rowCounts(s);
        const auth = authHeader(who);
        const abort = new AbortController();
        const o = await outcomeOf(
          async () => {
            const headers: Record<string, string> = { 'content-type': contentType, 'connect-protocol-version': '1' };
            if (auth !== undefined) headers.authorization = auth;
            let r: Response;
            try {
              r = await fetch(`${s.httpUrl}/rotor.v1.ExpiryService/WatchExpiry`, {
                method: 'POST',
                headers,
                body: payload,
                signal: abort.signal,
              });
            } catch (e) {
              if (abort.signal.aborted) return { code: undefined, message: 'cancelled' };
              throw e;
            }
            if (r.status !== 200) {
              const text = await r.text();
              expect(r.status, text).toBeLessThan(500);
              const error = JSON.parse(text) as { code?: unknown; message?: string };
              const code = codeOfName(error.code);
              expect(code, text).toBeDefined();
              return { code, message: error.message ?? '' };
            }
            let buf = Buffer.alloc(0);
            try {
              for await (const chunk of r.body!) {
                buf = Buffer.concat([buf, chunk as Uint8Array]);
                while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
                  const flags = buf[0]!;
                  const data = buf.subarray(5, 5 + buf.readUInt32BE(1));
                  buf = buf.subarray(5 + data.length);
                  if (flags & 2) {
                    const end = JSON.parse(data.toString()) as { error?: { code?: unknown; message?: string } };
                    if (end.error === undefined) return { code: undefined, message: '' };
                    const code = codeOfName(end.error.code);
                    expect(code, data.toString()).toBeDefined();
                    return { code, message: end.error.message ?? '' };
                  }
                }
              }
            } catch (e) {
              if (abort.signal.aborted) return { code: undefined, message: 'cancelled' };
              throw e;
            }
            throw new Error('the stream ended without an end-stream message');
          },
          () => abort.abort(),
        );
        expectDocumentedOrFraming(o);
        expect(await rowCounts(s)).toEqual(before);
      }),
      fuzzParams(100),
    );
    await expectServing(s);
    // A valid watch still opens and receives its snapshot.
    const w = api.watchExpiry({ includeSnapshot: true }, alice.secret);
    await w.until((e) => e.length > 0);
    w.cancel();
    await w.ended;
  });
});
