/**
 * GET /metrics (docs/metrics.md): Prometheus text that a scraper can parse, counters that move by
 * exactly what the calls did on either port, and nothing in it that names a token or a secret.
 */
import { Code } from '@connectrpc/connect';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { ROTOR_VERSION } from '../../src/runtime/version.js';
import { ENGINES } from '../support/engines.js';
import { secretsIn } from '../support/leak-scan.js';
import { connectApi, failure, grpcApi, newKey, type Api } from '../support/rotor-api.js';
import { inMs, issuedSecrets, startTestServer, waitForWatchers, type TestServer } from '../support/server.js';

type Scrape = Map<string, number>;

const SAMPLE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/;

/** Parses the exposition strictly: every line is a HELP, a TYPE, or a sample of a declared family. */
function parse(text: string): Scrape {
  expect(text.endsWith('\n')).toBe(true);
  const declared = new Map<string, string>();
  const samples: Scrape = new Map();
  for (const line of text.slice(0, -1).split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      expect(declared.has(type[1]!), `${type[1]} declared twice`).toBe(false);
      declared.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = SAMPLE.exec(line);
    expect(m, `not a sample line: ${line}`).not.toBeNull();
    const name = m![1]!;
    const family = declared.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    expect(declared.has(family), `${name} has no TYPE`).toBe(true);
    expect(samples.has(`${name}${m![2] ?? ''}`), `${line} repeated`).toBe(false);
    samples.set(`${name}${m![2] ?? ''}`, Number(m![3]));
  }
  return samples;
}

describe.each(ENGINES)('GET /metrics on %s', (engine) => {
  let s: TestServer;
  let grpc: Api;
  let connect: Api;
  const scrape = async (): Promise<{ text: string; at: Scrape }> => {
    const res = await fetch(`${s.httpUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    return { text, at: parse(text) };
  };
  const value = (at: Scrape, key: string) => at.get(key) ?? 0;

  beforeAll(async () => {
    // No reuse grace: presenting a rotated token again is reuse at once.
    s = await startTestServer({ ROTOR_DEFAULT_REUSE_GRACE_SECONDS: '0' }, { engine });
    grpc = grpcApi(s);
    connect = connectApi(s);
  });
  afterAll(async () => {
    grpc?.close();
    connect?.close();
    await s?.stop();
  });

  it('exports the alerting series from 0, before anything happened', async () => {
    const fresh = await startTestServer({}, { engine });
    try {
      const at = parse(await (await fetch(`${fresh.httpUrl}/metrics`)).text());
      for (const series of [
        'rotor_reuse_detected_total',
        'rotor_watch_overflows_total',
        'rotor_watch_streams_refused_total{cap="token"}',
        'rotor_watch_streams_refused_total{cap="owner"}',
        'rotor_watch_streams_refused_total{cap="process"}',
        'rotor_database_unavailable_total',
        'rotor_expiry_scans_total{result="failed"}',
        'rotor_retention_passes_total{result="failed"}',
        'rotor_retention_deleted_total{table="tokens"}',
        'rotor_token_events_total{type="family_revoked",reason="reuse_detected"}',
        'rotor_token_events_total{type="rotated",reason="rotated"}',
        'rotor_token_events_total{type="expired",reason="none"}',
      ]) {
        expect(at.get(series), series).toBe(0);
      }
    } finally {
      await fresh.stop();
    }
  });

  it('counts RPCs on both ports by method and code, unary durations, events by type and reason, OAuth routes; names no token', async () => {
    const before = (await scrape()).at;
    const created = await grpc.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc-observed',
        name: 'm',
        scopes: ['rotor:rotate'],
        expiresAt: inMs(Date.now(), 3_600_000),
      },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    const key = newKey();
    const rotated = await connect.rotateToken({ idempotencyKey: key }, created.secret);
    issuedSecrets.add(rotated.secret);
    // A retry with the same key: answered again, nothing new committed.
    await connect.rotateToken({ idempotencyKey: key }, created.secret);
    // The rotated token presented again with another key: reuse, the family is revoked.
    const reuse = await failure(grpc.rotateToken({ idempotencyKey: newKey() }, created.secret));
    expect(reuse.code).toBe(Code.PermissionDenied);
    expect((await failure(grpc.getToken({ id: 'tok_missing' }, s.adminSecret))).code).toBe(Code.NotFound);
    const introspected = await fetch(`${s.httpUrl}/oauth/introspect`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${s.adminSecret}` },
      body: new URLSearchParams({ token: rotated.secret }),
    });
    expect(introspected.status).toBe(200);
    expect((await fetch(`${s.httpUrl}/no/such/path`)).status).toBe(404);

    const { text, at } = await scrape();
    const delta = (k: string) => value(at, k) - value(before, k);
    const rpc = (method: string, code: string) =>
      delta(`rotor_rpc_handled_total{method="rotor.v1.TokenService/${method}",code="${code}"}`);
    expect(rpc('CreateToken', 'ok')).toBe(1);
    expect(rpc('RotateToken', 'ok')).toBe(2);
    expect(rpc('RotateToken', 'permission_denied')).toBe(1);
    expect(rpc('GetToken', 'not_found')).toBe(1);

    const events = (type: string, reason: string) =>
      delta(`rotor_token_events_total{type="${type}",reason="${reason}"}`);
    expect(events('created', 'none')).toBe(1);
    expect(events('rotated', 'rotated')).toBe(1);
    expect(events('created', 'rotated')).toBe(1);
    // One event per token of the family (the rotated one and its successor); one detection.
    expect(events('family_revoked', 'reuse_detected')).toBe(2);
    expect(delta('rotor_rpc_errors_total{method="rotor.v1.TokenService/RotateToken",error="reuse_detected"}')).toBe(1);
    expect(delta('rotor_reuse_detected_total')).toBe(1);
    expect(delta('rotor_rpc_errors_total{method="rotor.v1.TokenService/GetToken",error="not_found"}')).toBe(1);

    expect(delta('rotor_http_requests_total{route="/oauth/introspect",status="200"}')).toBe(1);
    expect(delta('rotor_http_requests_total{route="other",status="404"}')).toBe(1);
    expect(delta('rotor_http_requests_total{route="/metrics",status="200"}')).toBe(1);

    // The histogram of RotateToken: cumulative buckets, +Inf equal to the count of the calls timed.
    const h = 'rotor_rpc_duration_seconds';
    const method = 'method="rotor.v1.TokenService/RotateToken"';
    const buckets = [...at].filter(([k]) => k.startsWith(`${h}_bucket{${method},`)).map(([, v]) => v);
    expect(buckets.length).toBeGreaterThan(5);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!);
    expect(value(at, `${h}_bucket{${method},le="+Inf"}`)).toBe(value(at, `${h}_count{${method}}`));
    expect(value(at, `${h}_count{${method}}`) - value(before, `${h}_count{${method}}`)).toBe(3);
    expect(value(at, `${h}_sum{${method}}`)).toBeGreaterThan(0);

    expect(ROTOR_VERSION).toMatch(/^\d+\.\d+\.\d+/);
    expect(value(at, `rotor_build_info{version="${ROTOR_VERSION}",engine="${engine}"}`)).toBe(1);
    expect(value(at, 'process_resident_memory_bytes')).toBeGreaterThan(10_000_000);
    expect(
      value(at, 'rotor_token_cache_lookups_total{result="hit"}') +
        value(at, 'rotor_token_cache_lookups_total{result="miss"}'),
    ).toBeGreaterThan(0);

    // Bounded labels only: no token id, family id, owner or secret appears.
    for (const id of [
      created.token!.id,
      rotated.token!.id,
      created.token!.familyId,
      'svc-observed',
      'rotor:rotate',
      '127.0.0.1',
    ])
      expect(text).not.toContain(id);
    expect(secretsIn(text, issuedSecrets)).toEqual([]);
  });

  it('WatchExpiry streams: open ones in the gauge, cancelled ones (either port) counted as canceled, one ended by a revocation by its code', async () => {
    const before = (await scrape()).at;
    const created = await grpc.createToken(
      {
        kind: TokenKind.SERVICE_ACCOUNT,
        ownerId: 'svc-watched',
        name: 'w',
        scopes: ['rotor:rotate'],
        expiresAt: inMs(Date.now(), 3_600_000),
      },
      s.adminSecret,
    );
    issuedSecrets.add(created.secret);
    const byAdmin = grpc.watchExpiry({ ownerId: 'svc-watched', afterSequence: 0n }, s.adminSecret);
    const byAdminOverConnect = connect.watchExpiry({ ownerId: 'svc-watched', afterSequence: 0n }, s.adminSecret);
    const own = connect.watchExpiry({}, created.secret);
    await waitForWatchers(s, 3);
    expect(value((await scrape()).at, 'rotor_watch_streams')).toBe(3);

    byAdmin.cancel();
    byAdminOverConnect.cancel();
    await waitForWatchers(s, 1);
    // The holder's own stream ends once its bearer is revoked.
    await grpc.revokeToken({ id: created.token!.id }, s.adminSecret);
    expect((await own.ended)?.code).toBe(Code.Unauthenticated);
    await waitForWatchers(s, 0);

    const { at } = await scrape();
    const watch = (code: string) =>
      value(at, `rotor_rpc_handled_total{method="rotor.v1.ExpiryService/WatchExpiry",code="${code}"}`) -
      value(before, `rotor_rpc_handled_total{method="rotor.v1.ExpiryService/WatchExpiry",code="${code}"}`);
    // A cancelled stream is counted when its handler ends, which may come just after the feed let go of it.
    await expect
      .poll(
        async () =>
          value(
            (await scrape()).at,
            'rotor_rpc_handled_total{method="rotor.v1.ExpiryService/WatchExpiry",code="canceled"}',
          ) - value(before, 'rotor_rpc_handled_total{method="rotor.v1.ExpiryService/WatchExpiry",code="canceled"}'),
      )
      .toBe(2);
    expect(watch('unauthenticated')).toBe(1);
    expect(watch('unavailable')).toBe(0);
    expect(watch('ok')).toBe(0);
    expect(value(at, 'rotor_watch_streams')).toBe(0);
    expect(
      value(at, 'rotor_watch_events_read_total') - value(before, 'rotor_watch_events_read_total'),
    ).toBeGreaterThanOrEqual(2);
    // Streams are not timed.
    expect([...at.keys()].some((k) => k.includes('WatchExpiry') && k.startsWith('rotor_rpc_duration_seconds'))).toBe(
      false,
    );
  });
});

describe('GET /metrics with ROTOR_METRICS=token', () => {
  it('no bearer 401, a token without rotor:metrics 403 insufficient_scope, rotor:metrics or rotor:admin 200', async () => {
    const s = await startTestServer({ ROTOR_METRICS: 'token' });
    const grpc = grpcApi(s);
    try {
      const mint = async (scopes: string[]) => {
        const r = await grpc.createToken(
          {
            kind: TokenKind.SERVICE_ACCOUNT,
            ownerId: 'prometheus',
            name: 'scraper',
            scopes,
            expiresAt: inMs(Date.now(), 3_600_000),
          },
          s.adminSecret,
        );
        issuedSecrets.add(r.secret);
        return r.secret;
      };
      const get = (bearer?: string) =>
        fetch(`${s.httpUrl}/metrics`, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

      const anonymous = await get();
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(await anonymous.text()).not.toContain('rotor_rpc_handled_total');

      const unscoped = await get(await mint(['rotor:rotate']));
      expect(unscoped.status).toBe(403);
      expect(unscoped.headers.get('www-authenticate')).toBe(
        'Bearer realm="rotor", error="insufficient_scope", error_description="reading metrics needs rotor:metrics or rotor:admin"',
      );
      // Nothing of the metrics before authentication either.
      expect(await unscoped.json()).toEqual({
        error: 'insufficient_scope',
        error_description: 'reading metrics needs rotor:metrics or rotor:admin',
        rotor_error: 'insufficient_scope',
      });

      const scraper = await get(await mint(['rotor:metrics', 'rotor:rotate']));
      expect(scraper.status).toBe(200);
      parse(await scraper.text());
      expect((await get(s.adminSecret)).status).toBe(200);
      // On a loopback address the bearer never leaves the machine: no warning.
      expect(s.logs.some((l) => l.includes('ROTOR_METRICS=token without TLS'))).toBe(false);
    } finally {
      grpc.close();
      await s.stop();
    }
  });

  it('without TLS on a non-loopback address, the start-up log warns that the bearer travels in plain text', async () => {
    const s = await startTestServer({ ROTOR_METRICS: 'token', ROTOR_HOST: '0.0.0.0' });
    try {
      expect(s.logs.filter((l) => l.includes('ROTOR_METRICS=token without TLS')).length).toBe(1);
    } finally {
      await s.stop();
    }
  });
});

describe('GET /metrics turned off', () => {
  it('ROTOR_METRICS=off: 404, like any unknown path', async () => {
    const s = await startTestServer({ ROTOR_METRICS: 'off' });
    try {
      expect((await fetch(`${s.httpUrl}/metrics`)).status).toBe(404);
    } finally {
      await s.stop();
    }
  });
});
