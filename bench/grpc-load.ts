/**
 * The grpc-js load generator, run as a child process (`fork`) so that client work does not share
 * an event loop with the bench orchestration. It receives jobs over IPC, runs each as a closed loop
 * with a fixed concurrency on one grpc-js channel, and answers with the figures.
 */
import { HealthService } from '../src/gen/rotor/v1/health_service_pb.js';
import { TokenService } from '../src/gen/rotor/v1/token_service_pb.js';
import { createHash, randomBytes } from 'node:crypto';
import { importJWK, SignJWT, type JWK } from 'jose';
import { grpcClient } from '../test/support/grpc-client.js';
import { benchClient } from './grpc.js';
import { closedLoop, summarize, type ScenarioResult } from './stats.js';

/** A job the parent sends. `rotate` uses each secret exactly once (self-rotation). */
export type LoadSpec =
  | { kind: 'noop'; requests: number; concurrency: number }
  | { kind: 'introspect'; requests: number; concurrency: number; bearer: string; token: string }
  | { kind: 'rotate'; concurrency: number; secrets: string[] }
  /**
   * Self-rotation of DPoP-bound tokens (docs/dpop.md): one proof per secret, signed with the
   * client key before the loop starts (so the figure is the server's cost, not the client's
   * signing), sent as `authorization: DPoP` and `dpop` metadata.
   */
  | { kind: 'rotate_bound'; concurrency: number; secrets: string[]; privateJwk: JWK; publicJwk: JWK; htu: string };

export type LoadJob = LoadSpec & { id: number };

export type LoadReply = { id: number; ok: true; result: ScenarioResult } | { id: number; ok: false; error: string };

const address = process.argv[2];
if (!address || !process.send) {
  process.stderr.write('usage: fork grpc-load.js <host:port> (IPC channel required)\n');
  process.exit(2);
}
const health = benchClient(HealthService, address);
const tokens = benchClient(TokenService, address);
const rawTokens = grpcClient(TokenService, address);

/** One DPoP proof per secret for `htu`, made before the measured loop. */
async function proofsFor(job: Extract<LoadJob, { kind: 'rotate_bound' }>): Promise<string[]> {
  const key = await importJWK(job.privateJwk, 'ES256');
  const iat = Math.floor(Date.now() / 1000);
  return Promise.all(
    job.secrets.map((secret) =>
      new SignJWT({
        htm: 'POST',
        htu: job.htu,
        iat,
        jti: randomBytes(16).toString('base64url'),
        ath: createHash('sha256').update(secret).digest('base64url'),
      })
        .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: job.publicJwk })
        .sign(key),
    ),
  );
}

async function run(job: LoadJob): Promise<ScenarioResult> {
  switch (job.kind) {
    case 'noop': {
      const { latenciesMs, seconds } = await closedLoop(job.requests, job.concurrency, async () => {
        const res = (await health.call('check', {})) as { status: string };
        if (res.status !== 'SERVING') throw new Error(`HealthService/Check answered ${res.status}`);
      });
      return summarize(latenciesMs, seconds);
    }
    case 'introspect': {
      const { latenciesMs, seconds } = await closedLoop(job.requests, job.concurrency, async () => {
        const res = (await tokens.call('introspectToken', { token: job.token }, job.bearer)) as { active: boolean };
        if (!res.active) throw new Error('IntrospectToken answered active=false');
      });
      return summarize(latenciesMs, seconds);
    }
    case 'rotate': {
      const { latenciesMs, seconds } = await closedLoop(job.secrets.length, job.concurrency, async (i) => {
        const res = (await tokens.call('rotateToken', {}, job.secrets[i])) as { secret: string };
        if (!res.secret) throw new Error('RotateToken answered without a secret');
      });
      return summarize(latenciesMs, seconds);
    }
    case 'rotate_bound': {
      const proofs = await proofsFor(job);
      const { latenciesMs, seconds } = await closedLoop(job.secrets.length, job.concurrency, async (i) => {
        const res = await rawTokens.call(
          'rotateToken',
          {},
          { metadata: { authorization: `DPoP ${job.secrets[i]}`, dpop: proofs[i]! } },
        );
        if (!res.secret || res.tokenType !== 'DPoP') throw new Error('RotateToken answered without a bound successor');
      });
      return summarize(latenciesMs, seconds);
    }
  }
}

process.on('message', (job: LoadJob) => {
  run(job).then(
    (result) => process.send!({ id: job.id, ok: true, result } satisfies LoadReply),
    (e: unknown) => {
      const err = e as { code?: number; details?: string; message?: string };
      const error = err.details !== undefined ? `gRPC status ${err.code}: ${err.details}` : String(err.message ?? e);
      process.send!({ id: job.id, ok: false, error } satisfies LoadReply);
    },
  );
});
process.on('disconnect', () => {
  health.close();
  tokens.close();
  rawTokens.close();
  process.exit(0);
});
process.send({ ready: true });
