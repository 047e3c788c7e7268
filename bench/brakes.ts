/**
 * The brakes' cost on the hot path (docs/limits.md; target in bench/README.md, "Brakes"):
 * IntrospectToken on three `rotor serve` processes of one engine, loaded one at a time in
 * interleaved rounds by the same grpc-js closed loop:
 *   - `off`: every ROTOR_RATE_LIMIT_* 0;
 *   - `on`: every limit on at its default (the judged figure: on ÷ off ≥ 0.95);
 *   - `on_blocked` (diagnostic): the same, with another peer (127.0.0.2) blocked by the
 *     failed-authentication brake, so every call of the load also looks its own peer up.
 * Each server has a database of its own (PostgreSQL: a scratch database; SQLite: a file).
 */
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { TokenKind } from '../src/gen/rotor/v1/token_pb.js';
import { TokenService } from '../src/gen/rotor/v1/token_service_pb.js';
import { DEFAULT_RATE_LIMITS } from '../src/domain/rate-limits.js';
import { benchClient } from './grpc.js';
import type { LoadSpec } from './grpc-load.js';
import { createBenchDatabase, type BenchDatabase } from './postgres.js';
import { bootstrap, freePort, rotorEnv, startServer, type ServerProcess } from './server.js';
import type { ScenarioResult } from './stats.js';

/** What the scenario needs from bench/run.ts. */
export interface BrakesBenchOptions {
  engine: 'sqlite' | 'postgres';
  rounds: number;
  requests: number;
  warmup: number;
  concurrency: number;
  startLoader: (address: string) => Promise<{ run(job: LoadSpec): Promise<ScenarioResult>; stop(): void }>;
  progress: (msg: string) => void;
}

export const BRAKES_TARGET = 0.95;

/** Every limit at its default; the failed-authentication window long enough to outlast the run. */
const LIMITS_ON: Record<string, string> = {
  ROTOR_RATE_LIMIT_FAILED_AUTH_PER_PEER: String(DEFAULT_RATE_LIMITS.failed_auth.max),
  ROTOR_RATE_LIMIT_FAILED_AUTH_WINDOW_SECONDS: '86400',
  ROTOR_RATE_LIMIT_MINTS_PER_OWNER: String(DEFAULT_RATE_LIMITS.mints.max),
  ROTOR_RATE_LIMIT_ROTATIONS_PER_FAMILY: String(DEFAULT_RATE_LIMITS.rotations.max),
};

type VariantName = 'off' | 'on' | 'on_blocked';

interface Variant {
  name: VariantName;
  run(job: 'warm' | 'round'): Promise<ScenarioResult>;
}

/** One failed Connect call from `localAddress` (a bad bearer); resolves with the HTTP status. */
function failFrom(httpPort: number, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: httpPort,
        localAddress,
        method: 'POST',
        path: `/${TokenService.typeName}/${TokenService.method.introspectToken.name}`,
        headers: { 'content-type': 'application/json', authorization: 'Bearer not-a-rotor-token' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end('{}');
  });
}

/** Starts one variant's server and load child; what to undo is pushed onto `cleanups`. */
async function startVariant(
  name: VariantName,
  o: BrakesBenchOptions,
  cleanups: (() => Promise<void>)[],
): Promise<Variant> {
  const work = mkdtempSync(join(tmpdir(), `rotor-bench-brakes-${name}-`));
  cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
  let db: BenchDatabase | undefined;
  if (o.engine === 'postgres') {
    db = await createBenchDatabase();
    cleanups.push(() => db!.drop());
  }
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const env = {
    ...rotorEnv(join(work, 'data'), grpcPort, httpPort),
    ...(db ? { ROTOR_DATABASE_URL: db.url } : {}),
    ...(name === 'off' ? {} : LIMITS_ON),
  };
  const address = `127.0.0.1:${grpcPort}`;
  const admin = await bootstrap(env);
  const server: ServerProcess = await startServer(env, address);
  cleanups.push(() => server.stop());
  const api = benchClient(TokenService, address);
  const { secret: target } = (await api.call(
    'createToken',
    {
      kind: TokenKind.SERVICE_ACCOUNT,
      ownerId: 'bench',
      name: 'introspected',
      scopes: ['orders:read'],
      expiresAt: timestampFromMs(Date.now() + 3_600_000),
    },
    admin,
  )) as { secret: string };
  api.close();
  if (name === 'on_blocked') {
    let status = 0;
    for (let i = 0; i <= DEFAULT_RATE_LIMITS.failed_auth.max && status !== 429; i++)
      status = await failFrom(httpPort, '127.0.0.2');
    if (status !== 429) throw new Error('127.0.0.2 was not blocked by the failed-authentication brake');
  }
  const loader = await o.startLoader(address);
  cleanups.push(async () => loader.stop());
  o.progress(`brakes ${name}: rotor serve on ${address}`);
  return {
    name,
    run: (job: 'warm' | 'round') =>
      loader.run({
        kind: 'introspect',
        requests: job === 'warm' ? o.warmup : o.requests,
        concurrency: o.concurrency,
        bearer: admin,
        token: target,
      }),
  };
}

const round3 = (n: number) => Number(n.toFixed(3));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Runs the three variants in interleaved rounds; per-round ratios against `off`, and their medians. */
export async function brakesScenario(o: BrakesBenchOptions): Promise<Record<string, unknown>> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const variants: Variant[] = [];
    for (const name of ['off', 'on', 'on_blocked'] as const) variants.push(await startVariant(name, o, cleanups));
    for (const v of variants) await v.run('warm');
    const rps: Record<VariantName, number[]> = { off: [], on: [], on_blocked: [] };
    for (let r = 0; r < o.rounds; r++) {
      // The order rotates per round, so no variant always follows the same one.
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(r + k) % variants.length]!;
        const res = await v.run('round');
        rps[v.name].push(res.rps);
        o.progress(
          `  brakes ${v.name.padEnd(10)} ${String(res.rps).padStart(8)} req/s  p50 ${res.p50_ms} ms  p99 ${res.p99_ms} ms`,
        );
      }
    }
    const ratio = (name: VariantName) => {
      const rounds = rps[name].map((x, i) => round3(x / rps.off[i]!));
      return { median: round3(median(rounds)), rounds };
    };
    const on = ratio('on');
    return {
      tool: `@grpc/grpc-js closed loop in a child process, one channel, ${o.concurrency} calls in flight, IntrospectToken`,
      rps,
      ratios: { on_vs_off: on, on_blocked_vs_off_diagnostic: ratio('on_blocked') },
      target: { on_vs_off: BRAKES_TARGET, measured: on.median, met: on.median >= BRAKES_TARGET },
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}
