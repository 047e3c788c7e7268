/**
 * TLS on both ports (README: "TLS"): grpc-js over TLS on the gRPC port, the Connect client and
 * plain HTTPS requests on the HTTP port, the CLI through NODE_EXTRA_CA_CERTS, the default issuer
 * in https, and plain-text clients refused. The certificate is a test fixture
 * (test/fixtures/tls/README.md).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:https';
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthService } from '../../src/gen/rotor/v1/health_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { TokenService } from '../../src/gen/rotor/v1/token_service_pb.js';
import { ConfigError, loadConfig } from '../../src/runtime/config.js';
import { grpcClient } from '../support/grpc-client.js';
import { ROOT, runCli } from '../support/process.js';
import { inMs, issuedSecrets, startTestServer, type TestServer } from '../support/server.js';

const FIXTURES = `${ROOT}test/fixtures/tls`;
const TLS_ENV = { ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem`, ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` };
const CA = readFileSync(`${FIXTURES}/ca.pem`);

/** GET over HTTPS, trusting only the test CA. */
function httpsGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { ca: CA }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('TLS on both ports', () => {
  let s: TestServer;
  let https: string;

  beforeAll(async () => {
    s = await startTestServer(TLS_ENV);
    https = `https://127.0.0.1:${s.rotor.httpPort}`;
  });
  afterAll(async () => s?.stop());

  it('gRPC port: grpc-js with the CA creates a token; a plain-text client gets nowhere', async () => {
    const tokens = grpcClient(TokenService, s.grpcAddress, {}, grpc.credentials.createSsl(CA));
    try {
      const created = await tokens.call(
        'createToken',
        { kind: TokenKind.PROJECT, ownerId: 'tls', name: 'n', scopes: ['read'], expiresAt: inMs(Date.now(), 60_000) },
        { token: s.adminSecret },
      );
      issuedSecrets.add(created.secret);
      expect(created.token!.ownerId).toBe('tls');
    } finally {
      tokens.close();
    }
    const plain = grpcClient(HealthService, s.grpcAddress, { 'grpc.initial_reconnect_backoff_ms': 100 });
    try {
      const err = (await plain.call('check', {}).catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      plain.close();
    }
  });

  it('HTTP port: Connect over HTTPS, OAuth metadata with an https issuer, plain HTTP refused', async () => {
    const transport = createConnectTransport({ baseUrl: https, httpVersion: '1.1', nodeOptions: { ca: CA } });
    const client = createClient(TokenService, transport);
    const self = await client.introspectToken({ token: s.adminSecret }, { headers: { authorization: `Bearer ${s.adminSecret}` } });
    expect(self.active).toBe(true);

    const meta = await httpsGet(`${https}/.well-known/oauth-authorization-server`);
    expect(meta.status).toBe(200);
    expect((JSON.parse(meta.body) as { issuer: string }).issuer).toBe(https);
    expect((await httpsGet(`${https}/healthz`)).status).toBe(200);

    await expect(fetch(`http://127.0.0.1:${s.rotor.httpPort}/healthz`)).rejects.toThrow();
  });

  it('the CLI reaches it with NODE_EXTRA_CA_CERTS', async () => {
    const r = await runCli(['token', 'list', '--server', https, '--owner', 'tls', '--json'], { ROTOR_TOKEN: s.adminSecret, NODE_EXTRA_CA_CERTS: `${FIXTURES}/ca.pem` });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { tokens: { owner_id: string }[] }).tokens.map((t) => t.owner_id)).toEqual(['tls']);
  });
});

describe('TLS configuration', () => {
  const base = { ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-tls-config-')), ROTOR_SECRET: 'tls-config-test-secret-0123456789abcd' };
  it.each([
    [{ ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.pem` }, 'ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither'],
    [{ ROTOR_TLS_KEY_FILE: `${FIXTURES}/server.key` }, 'ROTOR_TLS_CERT_FILE and ROTOR_TLS_KEY_FILE go together: set both for TLS, or neither'],
    [{ ...TLS_ENV, ROTOR_TLS_CERT_FILE: `${FIXTURES}/missing.pem` }, `ROTOR_TLS_CERT_FILE: cannot read ${FIXTURES}/missing.pem (ENOENT)`],
    [{ ...TLS_ENV, ROTOR_TLS_CERT_FILE: `${FIXTURES}/server.key` }, `ROTOR_TLS_CERT_FILE: ${FIXTURES}/server.key holds no PEM certificate`],
    [{ ...TLS_ENV, ROTOR_TLS_KEY_FILE: `${FIXTURES}/other.key` }, `ROTOR_TLS_KEY_FILE: ${FIXTURES}/other.key is not a PEM private key of the certificate in ${FIXTURES}/server.pem`],
  ])('%o is refused naming the variable, never quoting the key', (env, message) => {
    let thrown: unknown;
    try {
      loadConfig({ ...base, ...env });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toEqual(new ConfigError(message));
    expect(String((thrown as Error).message)).not.toContain('PRIVATE KEY');
  });
});
