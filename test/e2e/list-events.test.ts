/**
 * TokenService/ListEvents, the audit trail (docs/design.md, "Audit trail"), end to end over both
 * ports (grpc-js on the gRPC port, the Connect client on the HTTP port) on every engine: each
 * filter, paging in both orders, the actor (a token id or `system`) and the workload `act`, the
 * authorization of GetToken (another owner's events refused), and bad input. Then `rotor events`
 * (the CLI, as a child process) against the same kind of server, human and --json.
 */
import { timestampFromMs, timestampMs } from '@bufbuild/protobuf/wkt';
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import type { AuditEvent } from '../../src/gen/rotor/v1/token_service_pb.js';
import { ENGINES, withEngines } from '../support/engines.js';
import { startTestIssuer, type TestIssuer } from '../support/jwt-issuer.js';
import { runCli } from '../support/process.js';
import { connectApi, failure, grpcApi, newKey, type Api, type Wire } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

const DAY_MS = 86_400_000;
const MSG_OTHER_OWNER = 'caller may not access tokens of this owner';

/** The (type, token id) pairs of events, the shape most assertions compare. */
const pairs = (events: AuditEvent[]) => events.map((e) => [e.type, e.tokenId]);

let issuer: TestIssuer;
let trust: string;
beforeAll(async () => {
  issuer = await startTestIssuer();
  trust = writeTrustConfig({
    issuers: [{ issuer: issuer.issuer, jwks_uri: issuer.jwksUri, audiences: ['rotor'], algorithms: ['ES256'] }],
  });
});
afterAll(async () => {
  await issuer?.close();
});

describe.each(withEngines<Wire>(['grpc', 'connect']))('ListEvents over %s on %s', (wire, engine) => {
  let s: TestServer;
  let api: Api;
  /** Team a's first token (rotor:rotate, deploy), rotated twice by itself: a0 → a1 → a2. */
  const a: { ids: string[]; family: string; secret: string } = { ids: [], family: '', secret: '' };
  /** Team b's token, revoked by the admin. */
  let b = { id: '', family: '' };
  /** A team-a token bound to a workload, rotated with the workload's JWT. */
  let bound = { id: '', successor: '' };
  /** The clock reading before the second rotation of a (since/until). */
  let beforeSecond = 0;

  const create = async (ownerId: string, scopes: string[], policy = {}) => {
    const res = await api.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId,
        name: 'deployer',
        scopes,
        expiresAt: inMs(s.clock.now(), DAY_MS),
        policy,
      },
      s.adminSecret,
    );
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, family: res.token!.familyId, secret: res.secret };
  };
  const rotateSelf = async (secret: string, extra = {}) => {
    const res = await api.rotateToken({ idempotencyKey: newKey(), ...extra }, secret);
    issuedSecrets.add(res.secret);
    return { id: res.token!.id, secret: res.secret };
  };
  /** Every page of a query, following next_page_token. */
  const all = async (req: Parameters<Api['listEvents']>[0], bearer = s.adminSecret) => {
    const out: AuditEvent[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const res = await api.listEvents({ ...req, pageToken }, bearer);
      out.push(...res.events);
      pageToken = res.nextPageToken;
      pages++;
    } while (pageToken !== '');
    return { events: out, pages };
  };

  beforeAll(async () => {
    s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
    api = wire === 'grpc' ? grpcApi(s) : connectApi(s);
    const a0 = await create('team-a', ['rotor:rotate', 'deploy']);
    a.ids.push(a0.id);
    a.family = a0.family;
    s.clock.advance(1_000);
    const a1 = await rotateSelf(a0.secret);
    a.ids.push(a1.id);
    s.clock.advance(60_000);
    beforeSecond = s.clock.now();
    s.clock.advance(1_000);
    const a2 = await rotateSelf(a1.secret);
    a.ids.push(a2.id);
    a.secret = a2.secret;
    b = await create('team-b', ['deploy']);
    await api.revokeToken({ id: b.id }, s.adminSecret);
    const w = await create('team-a', ['rotor:rotate'], {
      workloadBinding: { issuer: issuer.issuer, subject: 'project_path:group/app:*', audience: 'rotor' },
    });
    const next = await rotateSelf(w.secret, {
      actorToken: await issuer.sign(s.clock.now()),
      actorTokenType: JWT_TYPE,
    });
    bound = { id: w.id, successor: next.id };
  });
  afterAll(async () => {
    api?.close();
    await s?.stop();
  });

  it('filters by family, token, owner and type; each event says who, what and when', async () => {
    const family = (await api.listEvents({ familyId: a.family }, s.adminSecret)).events;
    expect(pairs(family)).toEqual([
      ['created', a.ids[0]],
      ['rotated', a.ids[0]],
      ['created', a.ids[1]],
      ['rotated', a.ids[1]],
      ['created', a.ids[2]],
    ]);
    const seqs = family.map((e) => Number(e.sequence));
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    const [created, rotated] = family;
    // Created by the admin, rotated by the token itself (a self-rotation's actor is the presented token).
    const admin = (await api.introspectToken({ token: s.adminSecret }, s.adminSecret)).tokenId;
    expect(created).toMatchObject({ actor: admin, systemActor: '', ownerId: 'team-a', familyId: a.family });
    expect(rotated).toMatchObject({ actor: a.ids[0], successorId: a.ids[1], reason: 'rotated', ownerId: 'team-a' });
    expect(rotated!.act).toBeUndefined();
    expect(rotated!.peer).not.toBe('');
    expect(timestampMs(rotated!.occurredAt!)).toBeGreaterThan(timestampMs(created!.occurredAt!));

    expect(pairs((await api.listEvents({ tokenId: a.ids[1] }, s.adminSecret)).events)).toEqual([
      ['created', a.ids[1]],
      ['rotated', a.ids[1]],
    ]);
    const teamB = (await api.listEvents({ ownerId: 'team-b' }, s.adminSecret)).events;
    expect(pairs(teamB)).toEqual([
      ['created', b.id],
      ['revoked', b.id],
    ]);
    expect(teamB[1]).toMatchObject({ actor: admin, reason: 'revoked' });
    expect(
      pairs((await api.listEvents({ ownerId: 'team-a', types: ['rotated', 'revoked'] }, s.adminSecret)).events),
    ).toEqual([
      ['rotated', a.ids[0]],
      ['rotated', a.ids[1]],
      ['rotated', bound.id],
    ]);
  });

  it('since and until bound the time; the bootstrap event is by `system`', async () => {
    const since = timestampFromMs(beforeSecond);
    expect(pairs((await api.listEvents({ familyId: a.family, since }, s.adminSecret)).events)).toEqual([
      ['rotated', a.ids[1]],
      ['created', a.ids[2]],
    ]);
    expect(pairs((await api.listEvents({ familyId: a.family, until: since }, s.adminSecret)).events)).toEqual([
      ['created', a.ids[0]],
      ['rotated', a.ids[0]],
      ['created', a.ids[1]],
    ]);
    const first = (await api.listEvents({ pageSize: 1 }, s.adminSecret)).events[0]!;
    expect(first).toMatchObject({ type: 'created', actor: 'system', systemActor: 'bootstrap', peer: '' });
  });

  it('a rotation proved by a workload JWT records the workload as act', async () => {
    const [rotated] = (await api.listEvents({ tokenId: bound.id, types: ['rotated'] }, s.adminSecret)).events;
    expect(rotated).toMatchObject({ actor: bound.id, successorId: bound.successor });
    expect(rotated!.act).toMatchObject({ iss: issuer.issuer, sub: 'project_path:group/app:ref_type:branch:ref:main' });
  });

  it('pages of one event, oldest or newest first, add up to the whole answer', async () => {
    const whole = (await api.listEvents({ ownerId: 'team-a' }, s.adminSecret)).events;
    expect(whole.length).toBe(8);
    const paged = await all({ ownerId: 'team-a', pageSize: 3 });
    expect(paged.pages).toBe(3);
    expect(paged.events.map((e) => e.sequence)).toEqual(whole.map((e) => e.sequence));
    const back = await all({ ownerId: 'team-a', pageSize: 5, newestFirst: true });
    expect(back.pages).toBe(2);
    expect(back.events.map((e) => e.sequence)).toEqual(whole.map((e) => e.sequence).reverse());
  });

  it("a token without rotor:admin sees its owner's events only; another owner's are refused", async () => {
    const mine = await all({}, a.secret);
    expect(new Set(mine.events.map((e) => e.ownerId))).toEqual(new Set(['team-a']));
    expect(mine.events.length).toBe(8);
    expect(pairs((await api.listEvents({ familyId: a.family }, a.secret)).events).length).toBe(5);
    for (const req of [{ ownerId: 'team-b' }, { tokenId: b.id }, { familyId: b.family }]) {
      const f = await failure(api.listEvents(req, a.secret));
      expect([f.code, f.rawMessage]).toEqual([Code.PermissionDenied, MSG_OTHER_OWNER]);
    }
    const unknown = await failure(api.listEvents({ tokenId: 'tok_unknown0000' }, a.secret));
    expect([unknown.code, unknown.rawMessage]).toEqual([Code.NotFound, 'token tok_unknown0000 not found']);
    const anonymous = await failure(api.listEvents({}, ''));
    expect(anonymous.code).toBe(Code.Unauthenticated);
  });

  it('refuses bad input naming the field', async () => {
    const cases: [Parameters<Api['listEvents']>[0], string][] = [
      [{ pageSize: 501 }, 'page_size must be between 0 and 500'],
      [{ pageToken: 'nope' }, 'page_token is not valid'],
      [{ types: ['<script>'] }, 'types holds "<script>", not an event type'],
      [{ tokenId: 'x' }, 'token_id: is not a valid id'],
      [{ since: timestampFromMs(2_000), until: timestampFromMs(1_000) }, 'until must be later than since'],
    ];
    for (const [req, message] of cases) {
      const f = await failure(api.listEvents(req, s.adminSecret));
      expect([f.code, f.rawMessage]).toEqual([Code.InvalidArgument, message]);
    }
    const { nextPageToken } = await api.listEvents({ pageSize: 1 }, s.adminSecret);
    const f = await failure(
      api.listEvents({ pageSize: 1, pageToken: nextPageToken, newestFirst: true }, s.adminSecret),
    );
    expect([f.code, f.rawMessage]).toEqual([
      Code.InvalidArgument,
      'page_token belongs to the other order (newest_first)',
    ]);
  });
});

describe.each(ENGINES)('rotor events (the CLI) on %s', (engine) => {
  let s: TestServer;
  let ids: string[] = [];
  beforeAll(async () => {
    s = await startTestServer({}, { engine });
    const api = grpcApi(s);
    try {
      const res = await api.createToken(
        {
          kind: TokenKind.PROJECT,
          ownerId: 'web',
          name: '<img src=x onerror=alert(1)>',
          scopes: ['rotor:rotate'],
          expiresAt: inMs(s.clock.now(), DAY_MS),
        },
        s.adminSecret,
      );
      issuedSecrets.add(res.secret);
      const next = await api.rotateToken({ idempotencyKey: newKey() }, res.secret);
      issuedSecrets.add(next.secret);
      ids = [res.token!.id, next.token!.id];
    } finally {
      api.close();
    }
  });
  afterAll(async () => {
    await s?.stop();
  });

  const env = () => ({ ROTOR_SERVER: s.httpUrl, ROTOR_TOKEN: s.adminSecret });

  it('--json prints one event per line with the filters applied', async () => {
    const r = await runCli(['events', '--owner', 'web', '--type', 'rotated', '--type', 'created', '--json'], env());
    expect([r.code, r.stderr]).toEqual([0, '']);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => [l.type, l.token_id])).toEqual([
      ['created', ids[0]],
      ['rotated', ids[0]],
      ['created', ids[1]],
    ]);
    expect(lines[1]).toMatchObject({ successor_id: ids[1], actor: ids[0], owner_id: 'web', reason: 'rotated' });
    expect(typeof lines[1]!.sequence).toBe('number');
    expect(typeof lines[1]!.occurred_at).toBe('string');
  });

  it('human output is a table; --limit pages through every event', async () => {
    const r = await runCli(['events', '--token', ids[0]!, '--page-size', '1'], env());
    expect([r.code, r.stderr]).toEqual([0, '']);
    const rows = r.stdout.trim().split('\n');
    expect(rows[0]).toMatch(/^SEQUENCE\s+TIME\s+TYPE\s+TOKEN\s+ACTOR\s+DETAIL$/);
    expect(rows.length).toBe(3);
    expect(rows[1]).toContain('created');
    expect(rows[2]).toContain(`rotated`);
    expect(rows[2]).toContain(`-> ${ids[1]}`);
  });

  it('a bad filter is a usage error (exit 2) naming the flag', async () => {
    const r = await runCli(['events', '--since', 'yesterday'], env());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--since');
  });
});
