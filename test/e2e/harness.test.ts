import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code, ConnectError } from '@connectrpc/connect';
import * as grpc from '@grpc/grpc-js';
import { HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { connectClient } from '../support/connect-client.js';
import { grpcClient } from '../support/grpc-client.js';
import { inMs, startTestServer, type TestServer } from '../support/server.js';
import { ENGINES } from '../support/engines.js';

describe.each(ENGINES)('test harness: a real server on ephemeral ports on %s', (engine) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { engine });
  });
  afterAll(async () => s.stop());

  it('answers the no-op RPC on both ports', async () => {
    const g = grpcClient(HealthService, s.grpcAddress);
    expect((await g.call('check', {})) as { status: string }).toMatchObject({ status: 'SERVING' });
    g.close();
    const c = connectClient(HealthService, s.httpUrl);
    expect((await c.check({})).status).toBe('SERVING');
  });

  it('creates a token over gRPC and reads it over Connect', async () => {
    const g = grpcClient(TokenService, s.grpcAddress);
    const res = (await g.call(
      'createToken',
      { kind: TokenKind.PROJECT, ownerId: 'p1', name: 'n', scopes: ['read'], expiresAt: inMs(s.clock.now(), 3600_000) },
      { token: s.adminSecret },
    )) as {
      token: { id: string };
      secret: string;
    };
    g.close();
    expect(res.secret).toMatch(/^rtr_prj_/);
    const c = connectClient(TokenService, s.httpUrl, s.adminSecret);
    expect((await c.getToken({ id: res.token.id })).token?.ownerId).toBe('p1');
  });

  it('refuses a call without credentials on both ports', async () => {
    const g = grpcClient(TokenService, s.grpcAddress);
    await expect(g.call('getToken', { id: 'tok_x' })).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: 'missing bearer token',
    });
    g.close();
    const c = connectClient(TokenService, s.httpUrl);
    const err = await c.getToken({ id: 'tok_x' }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: 'missing bearer token' });
  });
});
