/**
 * Operating Rotor with the standard tools: `grpc.health.v1.Health` on the gRPC port (gRPC's own
 * `grpc-health-check`, called here with a grpc-js client built from that package's service
 * definition) and over Connect on the HTTP port, and gRPC server reflection for `buf curl`
 * without `--schema` (README, "Health checks" and "Interfaces").
 *
 * Health follows the database: PostgreSQL is reached through a TCP proxy (test/support/tcp-proxy.ts)
 * that the test cuts and restores, as in database-loss.test.ts. During a shutdown drain every
 * service is NOT_SERVING while a unary call still runs: a federation exchange whose issuer holds
 * its JWKS answer.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { service as healthDefinition } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Health, HealthCheckResponse_ServingStatus } from '../../src/gen/grpc/health/v1/health_pb.js';
import { connectClient } from '../support/connect-client.js';
import { ENGINES, TEST_POSTGRES_URL } from '../support/engines.js';
import { ROOT } from '../support/process.js';
import { startTestIssuer } from '../support/jwt-issuer.js';
import { failure, grpcApi } from '../support/rotor-api.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { hostPortOf, startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { JWT_TYPE, writeTrustConfig } from '../support/trust.js';

const BUF = join(ROOT, 'node_modules/.bin/buf');
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const HealthClient = grpc.makeClientConstructor(healthDefinition, 'Health');
type Status = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN' | 'UNKNOWN';

/** `buf curl` over gRPC on the gRPC port, with no --schema: the schema comes from reflection. */
function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

function healthClient(address: string) {
  return new HealthClient(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(
      req: { service: string },
      cb: (err: grpc.ServiceError | null, res?: { status: Status }) => void,
    ): grpc.ClientUnaryCall;
    watch(req: { service: string }): grpc.ClientReadableStream<{ status: Status }>;
  };
}

function check(client: ReturnType<typeof healthClient>, service: string): Promise<Status> {
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))),
  );
}

/** A Watch whose messages are read one at a time; `ended` settles when the stream does. */
function watch(client: ReturnType<typeof healthClient>, service: string) {
  const call = client.watch({ service });
  const queue: Status[] = [];
  const waiting: ((s: Status) => void)[] = [];
  call.on('data', (m: { status: Status }) => {
    const w = waiting.shift();
    if (w) w(m.status);
    else queue.push(m.status);
  });
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => undefined);
  return {
    next: (): Promise<Status> => {
      const s = queue.shift();
      return s !== undefined ? Promise.resolve(s) : new Promise((resolve) => waiting.push(resolve));
    },
    /** Reads until `status` arrives; returns what came before it. */
    async until(status: Status): Promise<Status[]> {
      const before: Status[] = [];
      for (let s = await this.next(); s !== status; s = await this.next()) before.push(s);
      return before;
    },
    ended,
    cancel: () => call.cancel(),
  };
}

/** A Connect Watch on the HTTP port, read one message at a time. */
function connectWatch(s: TestServer, service: string) {
  const abort = new AbortController();
  const it = connectClient(Health, s.httpUrl).watch({ service }, { signal: abort.signal })[Symbol.asyncIterator]();
  return {
    next: async () => (await it.next()).value?.status as HealthCheckResponse_ServingStatus | undefined,
    cancel: () => abort.abort(),
  };
}

describe.each(ENGINES)('grpc.health.v1 and server reflection on %s', (engine) => {
  let s: TestServer;
  let proxy: TcpProxy | undefined;
  let client: ReturnType<typeof healthClient>;

  beforeAll(async () => {
    if (engine === 'postgres') proxy = await startTcpProxy(hostPortOf(TEST_POSTGRES_URL!));
    s = await startTestServer(
      { ROTOR_DATABASE_STATEMENT_TIMEOUT_MS: '1000', ROTOR_TOKEN_CACHE_TTL_MS: '0' },
      { engine, rewriteDatabaseUrl: proxy?.rewrite },
    );
    client = healthClient(s.grpcAddress);
  });
  afterAll(async () => {
    client?.close();
    proxy?.restore();
    await s?.stop();
    await proxy?.close();
  });

  it('Check: SERVING for "" and each rotor.v1 service, NOT_FOUND for a service it does not report', async () => {
    for (const service of [
      '',
      'rotor.v1.TokenService',
      'rotor.v1.TokenExchangeService',
      'rotor.v1.ExpiryService',
      'rotor.v1.HealthService',
    ]) {
      expect(await check(client, service)).toBe('SERVING');
    }
    const err = (await check(client, 'rotor.v1.NoSuchService').catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe('Health status unknown for service rotor.v1.NoSuchService');

    const w = watch(client, 'rotor.v1.NoSuchService');
    expect(await w.next()).toBe('SERVICE_UNKNOWN');
    w.cancel();
  });

  it('Check over Connect on the HTTP port answers the same', async () => {
    const health = connectClient(Health, s.httpUrl);
    expect((await health.check({ service: '' })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: 'rotor.v1.TokenService' })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    const err = await health.check({ service: 'rotor.v1.NoSuchService' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
    expect((err as ConnectError).rawMessage).toBe('Health status unknown for service rotor.v1.NoSuchService');
  });

  it('reflection: buf curl lists the services and calls IntrospectToken without --schema', async () => {
    const list = await bufCurl(['--list-services', `http://${s.grpcAddress}`]);
    expect(list.stderr).toBe('');
    expect(list.stdout.trim().split('\n')).toEqual(
      expect.arrayContaining([
        'grpc.health.v1.Health',
        'rotor.v1.ExpiryService',
        'rotor.v1.HealthService',
        'rotor.v1.TokenExchangeService',
        'rotor.v1.TokenService',
      ]),
    );
    const introspect = await bufCurl([
      '-H',
      `authorization: Bearer ${s.adminSecret}`,
      '-d',
      JSON.stringify({ token: s.adminSecret }),
      `http://${s.grpcAddress}/rotor.v1.TokenService/IntrospectToken`,
    ]);
    expect(introspect.stderr).toBe('');
    expect(JSON.parse(introspect.stdout)).toMatchObject({ active: true, ownerId: 'admin' });
  });

  it.skipIf(engine !== 'postgres')(
    'Watch: SERVING, NOT_SERVING while the database is cut, SERVING again once it is back; liveness stays SERVING',
    async () => {
      const all = watch(client, '');
      const tokens = watch(client, 'rotor.v1.TokenService');
      const http = connectWatch(s, '');
      expect(await all.next()).toBe('SERVING');
      expect(await tokens.next()).toBe('SERVING');
      expect(await http.next()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      proxy!.cut();
      try {
        expect(await all.next()).toBe('NOT_SERVING');
        expect(await tokens.next()).toBe('NOT_SERVING');
        expect(await http.next()).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
        expect(await check(client, '')).toBe('NOT_SERVING');
        expect((await connectClient(Health, s.httpUrl).check({ service: '' })).status).toBe(
          HealthCheckResponse_ServingStatus.NOT_SERVING,
        );
        // The liveness name does no I/O: a database outage must not restart the replica.
        expect(await check(client, 'rotor.v1.HealthService')).toBe('SERVING');
      } finally {
        proxy!.restore();
      }
      expect(await all.next()).toBe('SERVING');
      expect(await tokens.next()).toBe('SERVING');
      expect(await http.next()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      expect(await check(client, '')).toBe('SERVING');
      all.cancel();
      tokens.cancel();
      http.cancel();
    },
  );
});

describe.each(ENGINES)('grpc.health.v1 during a shutdown drain on %s', (engine) => {
  it('every service turns NOT_SERVING while a unary call still runs; the watches end with the drain', async () => {
    // The unary call held through the drain: a federation exchange whose JWKS fetch the issuer holds.
    const issuer = await startTestIssuer();
    issuer.mode = 'slow';
    const trust = writeTrustConfig({
      issuers: [
        {
          issuer: issuer.issuer,
          jwks_uri: issuer.jwksUri,
          audiences: ['rotor'],
          algorithms: ['ES256'],
          fetch_timeout_ms: 60_000,
        },
      ],
      federation: [
        {
          issuer: issuer.issuer,
          subject: 'project_path:group/app:*',
          audience: 'rotor',
          service_account: 'sa-drain',
          scopes: ['read'],
          max_lifetime_seconds: 3600,
        },
      ],
    });
    const s = await startTestServer({ ROTOR_TRUST_CONFIG: trust }, { engine });
    const client = healthClient(s.grpcAddress);
    const api = grpcApi(s);
    let stopping: Promise<void> | undefined;
    try {
      const all = watch(client, '');
      const liveness = watch(client, 'rotor.v1.HealthService');
      const http = connectWatch(s, '');
      expect(await all.next()).toBe('SERVING');
      expect(await liveness.next()).toBe('SERVING');
      expect(await http.next()).toBe(HealthCheckResponse_ServingStatus.SERVING);

      let held = true;
      const exchange = failure(
        api.exchangeToken({
          grantType: GRANT,
          subjectToken: await issuer.sign(s.clock.now()),
          subjectTokenType: JWT_TYPE,
        }),
      ).finally(() => {
        held = false;
      });
      // The call is in flight once the server asked the issuer for its keys.
      await waitFor(() => issuer.jwksFetches > 0);

      let stopped = false;
      stopping = s.stop(60_000).then(() => {
        stopped = true;
      });
      expect(await all.next()).toBe('NOT_SERVING');
      expect(await liveness.next()).toBe('NOT_SERVING');
      expect(await http.next()).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      // Still draining: the exchange holds the shutdown.
      expect([held, stopped]).toEqual([true, false]);
      // A new Check during the drain never hears SERVING: the port has stopped taking calls.
      const late = await check(client, '').catch((e: grpc.ServiceError) => e.code);
      expect(late).not.toBe('SERVING');

      // The issuer goes away: the exchange fails, the unary calls have drained, the watches end.
      await issuer.close();
      expect((await exchange).code).toBe(Code.Unavailable);
      expect((await all.ended).code).toBe(grpc.status.OK);
      expect((await liveness.ended).code).toBe(grpc.status.OK);
      expect(await http.next()).toBeUndefined();
      await stopping;
      expect(stopped).toBe(true);
    } finally {
      client.close();
      api.close();
      await issuer.close();
      if (!stopping) await s.stop();
      else await stopping;
    }
  });
});

/** Polls `ready` on the event loop (no clock involved) until it holds. */
async function waitFor(ready: () => boolean): Promise<void> {
  while (!ready()) await new Promise((resolve) => setImmediate(resolve));
}

describe('ROTOR_REFLECTION=off', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ ROTOR_REFLECTION: 'off' });
  });
  afterAll(async () => {
    await s?.stop();
  });

  it('buf curl cannot list the services; health is still served', async () => {
    const list = await bufCurl(['--list-services', `http://${s.grpcAddress}`]);
    expect(list.code).not.toBe(0);
    expect(list.stderr).toContain('unimplemented');
    const client = healthClient(s.grpcAddress);
    try {
      expect(await check(client, '')).toBe('SERVING');
    } finally {
      client.close();
    }
  });
});
