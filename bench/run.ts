/**
 * `npm run bench` (targets in bench/README.md; why ratios, not figures: CONTRIBUTING.md,
 * Benchmarks): IntrospectToken and RotateToken
 * throughput and p50/p99 latency against baselines measured in the same run:
 *   - introspection against the no-op RPC rotor.v1.HealthService/Check on the same gRPC port;
 *   - rotation against a bare knex transaction running the same statements on the same engine.
 * The server runs as a child process (`rotor serve`); load comes from h2load where installed and
 * from a grpc-js client loop in another child process. Every scenario runs in several interleaved
 * rounds, so a baseline and the figure compared with it are always measured moments apart; the
 * round with the median throughput is reported. Prints one JSON object on stdout; progress goes
 * to stderr. Exits non-zero only on errors, never on a missed target.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBinary } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { CheckRequestSchema, HealthService } from '../src/gen/rotor/v1/health_service_pb.js';
import { TokenKind } from '../src/gen/rotor/v1/token_pb.js';
import {
  IntrospectTokenRequestSchema,
  IntrospectTokenResponseSchema,
  TokenService,
} from '../src/gen/rotor/v1/token_service_pb.js';
import { openBareBaseline, type BareBaseline } from './bare-txn.js';
import { benchClient, grpcFrame, rawUnary } from './grpc.js';
import type { LoadReply, LoadSpec } from './grpc-load.js';
import { h2load, h2loadRun, h2loadVersion, type H2loadJob } from './h2load.js';
import { BENCH_POSTGRES_URL, createBenchDatabase, safeUrl, type BenchDatabase } from './postgres.js';
import { bootstrap, freePort, rotorEnv, startPlainServer, startServer, type ServerProcess } from './server.js';
import { DEFAULT_POOL_MAX } from '../src/store/database.js';
import { closedLoop, processCpuMs, summarize, type ScenarioResult } from './stats.js';
import { brakesScenario } from './brakes.js';
import { runFanout, type FanoutResult } from './fanout.js';
import { runFanoutFloor, type FanoutFloorResult } from './fanout-floor.js';
import type { WatcherClient } from './fanout-watchers.js';

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

/** Fixed request counts (per round) and concurrency; override with the BENCH_* variables. */
const settings = {
  rounds: intEnv('BENCH_ROUNDS', 5),
  concurrency: intEnv('BENCH_CONCURRENCY', 32),
  h2load_clients: intEnv('BENCH_H2LOAD_CLIENTS', 4),
  h2load_noop_requests: intEnv('BENCH_H2LOAD_NOOP_REQUESTS', 30_000),
  h2load_introspect_requests: intEnv('BENCH_H2LOAD_INTROSPECT_REQUESTS', 20_000),
  grpcjs_requests: intEnv('BENCH_GRPCJS_REQUESTS', 2_000),
  warmup_requests: intEnv('BENCH_WARMUP_REQUESTS', 1_000),
  h2load_slices: intEnv('BENCH_H2LOAD_SLICES', 4),
  instances: intEnv('BENCH_INSTANCES', 3),
  judged_repeats: intEnv('BENCH_JUDGED_REPEATS', 3),
};

/** Which parts run: `BENCH_SCENARIOS=throughput,brakes,fanout` (all by default). */
const parts = new Set((process.env.BENCH_SCENARIOS || 'throughput,brakes,fanout').split(',').map((p) => p.trim()));
/** Fan-out: stream counts (each on a fresh server) and rotations per count. */
const fanoutSettings = {
  streams: (process.env.BENCH_FANOUT_STREAMS || '1000,10000').split(',').map((n) => {
    const v = Number(n);
    if (!Number.isSafeInteger(v) || v <= 0 || v > 50_000)
      throw new Error(`BENCH_FANOUT_STREAMS must list counts 1-50000, got "${n}"`);
    return v;
  }),
  // Each rotation is of a different watched token; one stream may watch up to 100 (token_ids).
  rotations: Math.min(100, intEnv('BENCH_FANOUT_ROTATIONS', 10)),
  // Watcher clients (bench/fanout-watchers.ts): each count runs once per client, on a fresh server.
  clients: (process.env.BENCH_FANOUT_CLIENTS || 'grpc-js,http2').split(',').map((c): WatcherClient => {
    const v = c.trim();
    if (v !== 'grpc-js' && v !== 'http2')
      throw new Error(`BENCH_FANOUT_CLIENTS must list grpc-js and/or http2, got "${c}"`);
    return v;
  }),
};

const TARGETS = {
  introspect_vs_noop: 0.7,
  rotate_vs_bare_txn: 0.6,
  rotate_bound_vs_unbound: 0.7,
  noop_vs_plain: 0.9,
  introspect_vs_plain: 0.7,
  fanout_rss_mb_at_10000: 300,
  fanout_p99_ms: 100,
};

const progress = (msg: string) => process.stderr.write(`bench: ${msg}\n`);
const round3 = (n: number) => Number(n.toFixed(3));
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** A scenario's rounds: the median-throughput round's figures, plus every round's rps. */
type Reported = ScenarioResult & { rounds_rps: number[] };

function report(rounds: readonly ScenarioResult[]): Reported {
  const byRps = [...rounds].sort((a, b) => a.rps - b.rps);
  const mid = byRps[Math.floor((byRps.length - 1) / 2)]!;
  return { ...mid, rounds_rps: rounds.map((r) => r.rps) };
}

/** `run` with the CPU time process `pid` spent on it, per call (server_cpu_us_per_call). */
async function withServerCpu(pid: number | undefined, run: () => Promise<ScenarioResult>): Promise<ScenarioResult> {
  const before = processCpuMs(pid);
  const r = await run();
  const after = processCpuMs(pid);
  if (before === undefined || after === undefined) return r;
  return { ...r, server_cpu_us_per_call: round3(((after - before) * 1000) / r.requests) };
}

/**
 * Per-round ratios of the CPU one call of `b` cost the server over what one call of `a` cost it:
 * how `a`'s throughput compares with `b`'s on a server with a core to itself. Undefined without
 * the CPU figures.
 */
function cpuRatioOf(
  a: readonly ScenarioResult[],
  b: readonly ScenarioResult[],
): { median: number; rounds: number[] } | undefined {
  pairedLengths(a, b);
  if (a.some((x) => x.server_cpu_us_per_call === undefined) || b.some((x) => x.server_cpu_us_per_call === undefined))
    return undefined;
  const rounds = a.map((x, i) => round3(b[i]!.server_cpu_us_per_call! / x.server_cpu_us_per_call!));
  return { median: round3(median(rounds)), rounds };
}

/**
 * Runs h2load jobs side by side: each in `slices` parts of its requests, the order turned round
 * every slice (A B C, C B A, A B C, ...), so a slow or fast moment of the shared machine falls on
 * every scenario alike. Jobs of the same `group` (one scenario on several server processes) add
 * up to one result: throughput = the group's calls ÷ the sum of its h2load wall times, p50/p99
 * over all its calls, server CPU per call over all its slices. Results come in group order.
 */
async function interleavedH2load(
  jobs: readonly { job: H2loadJob; pid: number | undefined; group: number }[],
  slices: number,
): Promise<ScenarioResult[]> {
  const groups = Math.max(...jobs.map((j) => j.group)) + 1;
  const acc = Array.from({ length: groups }, () => ({
    latenciesMs: [] as number[],
    seconds: 0,
    cpuMs: 0 as number | undefined,
  }));
  for (let s = 0; s < slices; s++) {
    const order = jobs.map((_, i) => i);
    if (s % 2 === 1) order.reverse();
    for (const i of order) {
      const { job, pid, group } = jobs[i]!;
      const requests = Math.floor(job.requests / slices) + (s < job.requests % slices ? 1 : 0);
      if (requests === 0) continue;
      const before = processCpuMs(pid);
      const run = await h2loadRun({ ...job, name: `${job.name}-${s}`, requests });
      const after = processCpuMs(pid);
      const a = acc[group]!;
      for (const l of run.latenciesMs) a.latenciesMs.push(l);
      a.seconds += run.seconds;
      a.cpuMs =
        before === undefined || after === undefined || a.cpuMs === undefined ? undefined : a.cpuMs + (after - before);
    }
  }
  return acc.map((a) => {
    const r = summarize(a.latenciesMs, a.seconds);
    return a.cpuMs === undefined ? r : { ...r, server_cpu_us_per_call: round3((a.cpuMs * 1000) / r.requests) };
  });
}

/** A ratio pairs figures measured moments apart: one of each, as many of one as of the other. */
function pairedLengths(a: readonly unknown[], b: readonly unknown[]): void {
  if (a.length !== b.length) throw new Error(`bench: pairing ${a.length} figures with ${b.length}`);
}

/** Per-round ratios of two scenarios measured side by side, and their median (the judged figure). */
function ratioOf(a: readonly ScenarioResult[], b: readonly ScenarioResult[]): { median: number; rounds: number[] } {
  pairedLengths(a, b);
  const rounds = a.map((x, i) => round3(x.rps / b[i]!.rps));
  return { median: round3(median(rounds)), rounds };
}

/** The grpc-js load generator child process, driven over IPC. */
class Loader {
  private nextId = 1;
  private pending = new Map<number, { resolve: (r: ScenarioResult) => void; reject: (e: Error) => void }>();

  private constructor(readonly child: ChildProcess) {
    child.on('message', (msg: LoadReply | { ready: true }) => {
      if ('ready' in msg) return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(`grpc-js load: ${msg.error}`));
    });
    child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`grpc-js load child exited with ${code}`));
      this.pending.clear();
    });
  }

  static start(address: string): Promise<Loader> {
    const child = fork(new URL('./grpc-load.js', import.meta.url), [address], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve(new Loader(child)));
      child.once('exit', (code) => reject(new Error(`grpc-js load child exited with ${code} before starting`)));
    });
  }

  run(job: LoadSpec): Promise<ScenarioResult> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ ...job, id });
    });
  }

  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

function machine() {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1]!.trim();
  } catch {
    // not Linux: keep os.cpus()
  }
  return {
    nproc: availableParallelism(),
    cpu_model: model,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

type EngineName = 'sqlite' | 'postgres';

/** Which engines to run (BENCH_ENGINES, default both). */
function engines(): EngineName[] {
  const raw = (process.env.BENCH_ENGINES || 'sqlite,postgres').split(',').map((e) => e.trim());
  for (const e of raw)
    if (e !== 'sqlite' && e !== 'postgres') throw new Error(`BENCH_ENGINES: unknown engine "${e}" (sqlite, postgres)`);
  return raw as EngineName[];
}

async function main(): Promise<void> {
  const started = Date.now();
  // BENCH_NO_H2LOAD=1 forces the grpc-js-only fallback, as on a machine without h2load.
  const h2 = process.env.BENCH_NO_H2LOAD ? undefined : await h2loadVersion();
  if (!h2)
    progress('h2load not found (Debian: apt-get install nghttp2-client); the grpc-js loop measures every scenario');
  const results: Record<string, unknown> = {};
  for (const engine of parts.has('throughput') ? engines() : []) {
    progress(`== engine: ${engine}`);
    let server: BenchDatabase | undefined;
    let bare: BenchDatabase | undefined;
    try {
      if (engine === 'postgres') {
        try {
          server = await createBenchDatabase();
          bare = await createBenchDatabase();
        } catch (e) {
          const reason = `PostgreSQL at ${safeUrl(BENCH_POSTGRES_URL)} not usable: ${e instanceof Error ? e.message : String(e)}`;
          progress(`skipping postgres: ${reason}`);
          results[engine] = { skipped: reason };
          continue;
        }
      }
      results[engine] = await benchEngine(engine, h2, server?.url, bare?.url);
    } finally {
      await server?.drop();
      await bare?.drop();
    }
  }
  const brakes: Record<string, unknown> = {};
  for (const engine of parts.has('brakes') ? engines() : []) {
    progress(`== brakes: ${engine}`);
    try {
      brakes[engine] = await brakesScenario({
        engine,
        rounds: settings.rounds,
        requests: settings.grpcjs_requests,
        warmup: settings.warmup_requests,
        concurrency: settings.concurrency,
        startLoader: (address) => Loader.start(address),
        progress,
      });
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      progress(`brakes on ${engine} failed: ${reason}`);
      brakes[engine] = { failed: reason };
    }
  }
  const fanout = parts.has('fanout') ? await fanoutScenario() : undefined;
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    settings,
    engines: results,
    ...(parts.has('brakes') ? { brakes } : {}),
    ...(fanout ? { fanout } : {}),
    wall_seconds: Math.round((Date.now() - started) / 100) / 10,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}

/** The WatchExpiry fan-out scenario (10,000 streams under 300 MB RSS, bench/README.md), on SQLite: each stream count on a fresh server. */
async function fanoutScenario(): Promise<Record<string, unknown>> {
  const work = mkdtempSync(join(tmpdir(), 'rotor-bench-fanout-'));
  try {
    const runs: FanoutResult[] = [];
    for (const n of fanoutSettings.streams) {
      for (const client of fanoutSettings.clients)
        runs.push(await runFanout(work, n, fanoutSettings.rotations, client, progress));
    }
    // Diagnostic: bare node:http2 at the same counts (bench/fanout-floor.ts), the transport's floor.
    const floor: FanoutFloorResult[] = [];
    for (const n of fanoutSettings.streams) {
      const f = await runFanoutFloor(n, Math.max(1, Math.ceil(n / 1000)), fanoutSettings.rotations);
      floor.push(f);
      progress(
        `  floor  ${String(n).padStart(6)} streams (bare node:http2 server and client): p50 ${f.latency_p50_ms} ms, p99 ${f.latency_p99_ms} ms, server CPU per fan-out ${f.server_cpu_ms_per_event} ms, RSS ${f.rss_streams_open_mb} MB`,
      );
    }
    // RSS: the worst 10,000-stream run; it does not depend on the client much.
    const at10k = runs
      .filter((r) => r.streams === 10_000)
      .sort(
        (a, b) =>
          Math.max(b.rss_streams_open_mb, b.rss_after_rotations_mb) -
          Math.max(a.rss_streams_open_mb, a.rss_after_rotations_mb),
      )[0];
    return {
      tool: 'WatchExpiry on the gRPC port (grpc-js server), watcher child process with @grpc/grpc-js or raw node:http2 gRPC clients; latency = receipt − occurred_at of ROTATED; RSS = VmRSS of the rotor serve child',
      settings: fanoutSettings,
      runs,
      floor_diagnostic: floor,
      targets: {
        // The higher of the two steady readings (streams open, after the rotations); the peak while
        // opening is reported next to it (rss_peak_mb) but not judged.
        rss_mb_at_10000: {
          target: TARGETS.fanout_rss_mb_at_10000,
          measured: at10k ? Math.max(at10k.rss_streams_open_mb, at10k.rss_after_rotations_mb) : null,
          peak: at10k?.rss_peak_mb ?? null,
          met: at10k
            ? Math.max(at10k.rss_streams_open_mb, at10k.rss_after_rotations_mb) < TARGETS.fanout_rss_mb_at_10000
            : null,
        },
        p99_ms: {
          target: TARGETS.fanout_p99_ms,
          measured: Math.max(...runs.map((r) => r.latency_p99_ms)),
          by_client: Object.fromEntries(
            fanoutSettings.clients.map((c) => [
              c,
              Math.max(...runs.filter((r) => r.client === c).map((r) => r.latency_p99_ms)),
            ]),
          ),
          met: runs.every((r) => r.latency_p99_ms < TARGETS.fanout_p99_ms),
        },
      },
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Every scenario on one engine: the server on `serverDbUrl` (PostgreSQL) or a SQLite file in its
 * data directory, the bare baseline on its own database of the same engine.
 */
async function benchEngine(
  engine: EngineName,
  h2: string | undefined,
  serverDbUrl: string | undefined,
  bareDbUrl: string | undefined,
) {
  const { rounds, concurrency: c, grpcjs_requests: n, warmup_requests: warm } = settings;
  const work = mkdtempSync(join(tmpdir(), 'rotor-bench-'));
  let server: ServerProcess | undefined;
  let serverOff: ServerProcess | undefined;
  let plain: ServerProcess | undefined;
  const extraServers: ServerProcess[] = [];
  let loader: Loader | undefined;
  let plainLoader: Loader | undefined;
  let bare: BareBaseline | undefined;
  try {
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    const env = {
      ...rotorEnv(join(work, 'data'), grpcPort, httpPort),
      ...(serverDbUrl ? { ROTOR_DATABASE_URL: serverDbUrl } : {}),
      NODE_OPTIONS: process.env.BENCH_SERVER_NODE_OPTIONS ?? '',
    };
    const address = `127.0.0.1:${grpcPort}`;

    progress('rotor bootstrap');
    const admin = await bootstrap(env);
    progress(`rotor serve on ${address}`);
    server = await startServer(env, address);
    // The same server with its access log off, on the same database: the log's own cost.
    const [offGrpcPort, offHttpPort, plainPort] = [await freePort(), await freePort(), await freePort()];
    const offAddress = `127.0.0.1:${offGrpcPort}`;
    progress(`rotor serve with ROTOR_ACCESS_LOG=off on ${offAddress}`);
    serverOff = await startServer(
      { ...env, ROTOR_GRPC_PORT: String(offGrpcPort), ROTOR_HTTP_PORT: String(offHttpPort), ROTOR_ACCESS_LOG: 'off' },
      offAddress,
    );
    // The baseline a user compares with: a plain grpc-js no-op server, started the same way.
    const plainAddress = `127.0.0.1:${plainPort}`;
    progress(`plain @grpc/grpc-js no-op server on ${plainAddress}`);
    plain = await startPlainServer(env, plainPort);
    // The judged trio runs on `instances` processes of each server (bench/README.md, "Eleventh
    // session"): two processes of the same code differ by up to 14 % for their whole life, so one
    // process of each made the ratio a draw of two such processes. The extra Rotor processes serve
    // the same database, as replicas do, without LISTEN (PostgreSQL): the rounds' rotations then
    // wake no more processes than before (with it, each rotation's NOTIFY woke two more processes
    // on the same two cores; RotateToken ÷ bare transaction measured 0.53 with it, 0.73 without).
    const judged: { rotor: string; plain: string }[] = [{ rotor: address, plain: plainAddress }];
    // Every server process by its gRPC address, for its CPU figures.
    const byAddress = new Map<string, ServerProcess>([
      [address, server],
      [offAddress, serverOff],
      [plainAddress, plain],
    ]);
    for (let k = 1; k < settings.instances; k++) {
      const [g, h, p] = [await freePort(), await freePort(), await freePort()];
      const at = { rotor: `127.0.0.1:${g}`, plain: `127.0.0.1:${p}` };
      progress(`instance ${k + 1}/${settings.instances}: rotor serve on ${at.rotor}, plain server on ${at.plain}`);
      const rotor = await startServer(
        { ...env, ROTOR_GRPC_PORT: String(g), ROTOR_HTTP_PORT: String(h), ROTOR_DATABASE_LISTEN: 'off' },
        at.rotor,
      );
      extraServers.push(rotor);
      const plainK = await startPlainServer(env, p);
      extraServers.push(plainK);
      byAddress.set(at.rotor, rotor).set(at.plain, plainK);
      judged.push(at);
    }

    // Tokens through the API: one to introspect, and a pool to rotate (each rotated exactly once).
    const poolSize = warm + rounds * n;
    progress(`creating 1 + ${poolSize} tokens through CreateToken`);
    const api = benchClient(TokenService, address);
    // 60 days: past the largest expiry threshold (30d), so the expiry scheduler has nothing to
    // write for these tokens while rounds run (bench/README.md, "Ninth session").
    const expiresAt = timestampFromMs(Date.now() + 60 * 86_400_000);
    const create = async (name: string, scopes: string[], dpopJkt = '') =>
      (await api.call(
        'createToken',
        { kind: TokenKind.SERVICE_ACCOUNT, ownerId: 'bench', name, scopes, expiresAt, policy: { dpopJkt } },
        admin,
      )) as { secret: string };
    const target = (await create('introspected', ['orders:read'])).secret;
    const pool = new Array<string>(poolSize);
    await closedLoop(poolSize, 16, async (i) => {
      pool[i] = (await create(`pool-${i}`, ['rotor:rotate'])).secret;
    });
    // The same pool again, bound to one client key (docs/dpop.md): bound against unbound rotation.
    const dpopKey = await generateKeyPair('ES256', { extractable: true });
    const privateJwk = await exportJWK(dpopKey.privateKey);
    const publicJwk = await exportJWK(dpopKey.publicKey);
    const jkt = await calculateJwkThumbprint(publicJwk, 'sha256');
    const boundPool = new Array<string>(poolSize);
    progress(`creating ${poolSize} DPoP-bound tokens through CreateToken`);
    await closedLoop(poolSize, 16, async (i) => {
      boundPool[i] = (await create(`bound-${i}`, ['rotor:rotate'], jkt)).secret;
    });
    api.close();
    const rotationSlice = (r: number) => pool.slice(warm + r * n, warm + (r + 1) * n);
    const boundSlice = (r: number) => boundPool.slice(warm + r * n, warm + (r + 1) * n);
    const rotateBound = (secrets: string[]) =>
      loader!.run({
        kind: 'rotate_bound',
        concurrency: c,
        secrets,
        privateJwk,
        publicJwk,
        htu: `http://${address}/${TokenService.typeName}/${TokenService.method.rotateToken.name}`,
      });

    // Two pools: the knex baseline and the driver-level diagnostic each rotate every token once.
    progress(`seeding the bare-transaction database with ${2 * (warm + rounds * n)} tokens`);
    bare = await openBareBaseline(work, 2 * (warm + rounds * n), bareDbUrl);

    // h2load sends the same pre-encoded gRPC frame on every stream. Check once, through grpc-js,
    // that these exact bytes succeed, and learn the size of a successful response.
    const noopPath = `/${HealthService.typeName}/${HealthService.method.check.name}`;
    const introspectPath = `/${TokenService.typeName}/${TokenService.method.introspectToken.name}`;
    const noopFrame = grpcFrame(CheckRequestSchema, {});
    const introspectFrame = grpcFrame(IntrospectTokenRequestSchema, { token: target });
    const noopCheck = await rawUnary(address, noopPath, noopFrame);
    const introspectCheck = await rawUnary(address, introspectPath, introspectFrame, admin);
    if (noopCheck.code !== 0) throw new Error(`HealthService/Check failed: ${noopCheck.details}`);
    if (introspectCheck.code !== 0) throw new Error(`IntrospectToken failed: ${introspectCheck.details}`);
    if (!fromBinary(IntrospectTokenResponseSchema, introspectCheck.response).active)
      throw new Error('IntrospectToken answered active=false');
    const plainCheck = await rawUnary(plainAddress, noopPath, noopFrame);
    if (plainCheck.code !== 0 || !plainCheck.response.equals(noopCheck.response))
      throw new Error(`the plain server answers differently: ${plainCheck.details}`);
    const streams = Math.max(1, Math.round(c / settings.h2load_clients));
    const pidOf = (at: string) => byAddress.get(at)?.child.pid;
    const noopJob = (name: string, requests: number, bearer?: string, at = address): H2loadJob => ({
      name,
      url: `http://${at}${noopPath}`,
      frame: noopFrame,
      bearer,
      requests,
      clients: settings.h2load_clients,
      streamsPerClient: streams,
      responseDataBytes: 5 + noopCheck.response.length,
      workDir: work,
    });
    const introspectJob = (name: string, requests: number, at = address): H2loadJob => ({
      name,
      url: `http://${at}${introspectPath}`,
      frame: introspectFrame,
      bearer: admin,
      requests,
      clients: settings.h2load_clients,
      streamsPerClient: streams,
      responseDataBytes: 5 + introspectCheck.response.length,
      workDir: work,
    });
    const h2noop = (name: string, requests: number, bearer?: string, at = address) =>
      withServerCpu(pidOf(at), () => h2load(noopJob(name, requests, bearer, at)));
    const h2introspect = (name: string, requests: number, at = address) =>
      withServerCpu(pidOf(at), () => h2load(introspectJob(name, requests, at)));

    loader = await Loader.start(address);
    plainLoader = await Loader.start(plainAddress);

    progress('warm-up');
    if (h2) {
      await h2noop('warm-noop', warm);
      await h2introspect('warm-introspect', warm);
      await h2noop('warm-noop-plain', warm, undefined, plainAddress);
      await h2noop('warm-noop-off', warm, undefined, offAddress);
      await h2introspect('warm-introspect-off', warm, offAddress);
      for (const [k, at] of judged.entries()) {
        if (k === 0) continue;
        await h2noop(`warm-noop-${k}`, warm, undefined, at.rotor);
        await h2introspect(`warm-introspect-${k}`, warm, at.rotor);
        await h2noop(`warm-noop-plain-${k}`, warm, undefined, at.plain);
      }
    }
    await plainLoader.run({ kind: 'noop', requests: warm, concurrency: c });
    await loader.run({ kind: 'noop', requests: warm, concurrency: c });
    await loader.run({ kind: 'introspect', requests: warm, concurrency: c, bearer: admin, token: target });
    await loader.run({ kind: 'rotate', concurrency: c, secrets: pool.slice(0, warm) });
    await rotateBound(boundPool.slice(0, warm));
    await bare.rotation(warm, c);
    await bare.rotationDriver(warm, c);
    await bare.introspection(warm, c);

    const results: Record<string, ScenarioResult[]> = {
      noop_plain_h2load: [],
      noop_h2load: [],
      noop_access_off_h2load: [],
      introspect_access_off_h2load: [],
      introspect_h2load: [],
      noop_bearer_h2load: [],
      noop_grpcjs: [],
      introspect_grpcjs: [],
      rotate_grpcjs: [],
      rotate_bound_grpcjs: [],
      bare_txn: [],
      bare_txn_driver: [],
      bare_introspect_queries: [],
      noop_plain_grpcjs: [],
    };
    const record = (name: string, r: ScenarioResult) => {
      results[name]!.push(r);
      const cpu = r.server_cpu_us_per_call === undefined ? '' : `  server CPU ${r.server_cpu_us_per_call} µs/call`;
      progress(`  ${name.padEnd(24)} ${String(r.rps).padStart(8)} req/s  p50 ${r.p50_ms} ms  p99 ${r.p99_ms} ms${cpu}`);
    };
    for (let r = 0; r < rounds; r++) {
      progress(`round ${r + 1}/${rounds}`);
      if (h2) {
        // The judged trio side by side, in slices (interleavedH2load): plain, Rotor's no-op and
        // introspection, each spread over the instances' processes and added up; `judged_repeats`
        // times a round, each time a ratio of its own (bench/README.md, "Twelfth session").
        const share = (total: number, k: number) =>
          Math.floor(total / judged.length) + (k < total % judged.length ? 1 : 0);
        for (let j = 0; j < settings.judged_repeats; j++) {
          const [plainR, noopR, introspectR] = await interleavedH2load(
            judged.flatMap((at, k) => [
              {
                job: noopJob(`noop-plain-${r}-${j}-${k}`, share(settings.h2load_noop_requests, k), undefined, at.plain),
                pid: pidOf(at.plain),
                group: 0,
              },
              {
                job: noopJob(`noop-${r}-${j}-${k}`, share(settings.h2load_noop_requests, k), undefined, at.rotor),
                pid: pidOf(at.rotor),
                group: 1,
              },
              {
                job: introspectJob(
                  `introspect-${r}-${j}-${k}`,
                  share(settings.h2load_introspect_requests, k),
                  at.rotor,
                ),
                pid: pidOf(at.rotor),
                group: 2,
              },
            ]),
            settings.h2load_slices,
          );
          record('noop_plain_h2load', plainR!);
          record('noop_h2load', noopR!);
          record('introspect_h2load', introspectR!);
        }
        record(
          'noop_access_off_h2load',
          await h2noop(`noop-off-${r}`, settings.h2load_noop_requests, undefined, offAddress),
        );
        record(
          'introspect_access_off_h2load',
          await h2introspect(`introspect-off-${r}`, settings.h2load_introspect_requests, offAddress),
        );
        // Diagnostic only: the no-op carrying the same `authorization` header as the introspection.
        record('noop_bearer_h2load', await h2noop(`noop-bearer-${r}`, settings.h2load_noop_requests, admin));
      }
      record('noop_plain_grpcjs', await plainLoader.run({ kind: 'noop', requests: n, concurrency: c }));
      record('noop_grpcjs', await loader.run({ kind: 'noop', requests: n, concurrency: c }));
      record(
        'introspect_grpcjs',
        await loader.run({ kind: 'introspect', requests: n, concurrency: c, bearer: admin, token: target }),
      );
      record('rotate_grpcjs', await loader.run({ kind: 'rotate', concurrency: c, secrets: rotationSlice(r) }));
      record('rotate_bound_grpcjs', await rotateBound(boundSlice(r)));
      // The server is idle (no client) while the bare baselines run in this process.
      record('bare_txn', await bare.rotation(n, c));
      // Diagnostic only: the server's own driver-level commit (no RPC, no lookup, no minting).
      record('bare_txn_driver', await bare.rotationDriver(n, c));
      record('bare_introspect_queries', await bare.introspection(n, c));
    }

    // The judged scenarios have `judged_repeats` entries a round; a diagnostic that sets one
    // against a scenario measured once a round pairs it with the round's last repeat, the one
    // measured just before it.
    const lastRepeats = (rs: readonly ScenarioResult[]) =>
      h2 ? rs.filter((_, i) => i % settings.judged_repeats === settings.judged_repeats - 1) : rs;
    const scenarios: Record<string, Reported> = {};
    for (const [name, rs] of Object.entries(results)) if (rs.length > 0) scenarios[name] = report(rs);
    const introspectVsNoop = h2
      ? ratioOf(results.introspect_h2load!, results.noop_h2load!)
      : ratioOf(results.introspect_grpcjs!, results.noop_grpcjs!);
    const rotateVsBare = ratioOf(results.rotate_grpcjs!, results.bare_txn!);
    const boundVsUnbound = ratioOf(results.rotate_bound_grpcjs!, results.rotate_grpcjs!);
    const noopVsPlain = h2
      ? ratioOf(results.noop_h2load!, results.noop_plain_h2load!)
      : ratioOf(results.noop_grpcjs!, results.noop_plain_grpcjs!);
    const introspectVsPlain = h2
      ? ratioOf(results.introspect_h2load!, results.noop_plain_h2load!)
      : ratioOf(results.introspect_grpcjs!, results.noop_plain_grpcjs!);
    return {
      database:
        engine === 'postgres'
          ? `PostgreSQL, scratch databases on ${safeUrl(BENCH_POSTGRES_URL)}, pool ${DEFAULT_POOL_MAX} connections (server and bare baseline alike)`
          : 'SQLite file in WAL mode, one connection',
      tools: {
        introspect_vs_noop: h2
          ? `${h2}, ${settings.h2load_clients} connections × ${streams} streams, 1 thread; the judged trio on ${settings.instances} processes of each server, added up, ${settings.judged_repeats} times a round`
          : `@grpc/grpc-js closed loop (h2load not installed or BENCH_NO_H2LOAD set)`,
        grpcjs: `@grpc/grpc-js closed loop in a child process, one channel, ${c} calls in flight`,
        plain: 'bench/plain-grpc-server.ts: a plain @grpc/grpc-js no-op server in a child process, as rotor serve',
        access_log:
          'rotor serve with ROTOR_LOG_LEVEL=info and ROTOR_ACCESS_LOG=on (stdout to /dev/null); the _access_off scenarios: a second rotor serve on the same database with ROTOR_ACCESS_LOG=off',
        bare: `knex in the bench process on its own ${engine === 'postgres' ? 'PostgreSQL scratch database' : 'SQLite file'} (src/store/database.ts settings), ${c} in flight`,
      },
      scenarios,
      ratios: {
        introspect_vs_noop: introspectVsNoop,
        rotate_vs_bare_txn: rotateVsBare,
        rotate_bound_vs_unbound: boundVsUnbound,
        noop_vs_plain: noopVsPlain,
        introspect_vs_plain: introspectVsPlain,
        noop_vs_plain_grpcjs: ratioOf(results.noop_grpcjs!, results.noop_plain_grpcjs!),
        ...(h2
          ? {
              noop_vs_plain_by_server_cpu: cpuRatioOf(results.noop_h2load!, results.noop_plain_h2load!),
              introspect_vs_plain_by_server_cpu: cpuRatioOf(results.introspect_h2load!, results.noop_plain_h2load!),
              noop_access_on_vs_off_by_server_cpu: cpuRatioOf(
                lastRepeats(results.noop_h2load!),
                results.noop_access_off_h2load!,
              ),
              introspect_access_on_vs_off_by_server_cpu: cpuRatioOf(
                lastRepeats(results.introspect_h2load!),
                results.introspect_access_off_h2load!,
              ),
            }
          : {}),
        ...(h2
          ? {
              noop_access_on_vs_off_diagnostic: ratioOf(
                lastRepeats(results.noop_h2load!),
                results.noop_access_off_h2load!,
              ),
              introspect_access_on_vs_off_diagnostic: ratioOf(
                lastRepeats(results.introspect_h2load!),
                results.introspect_access_off_h2load!,
              ),
              introspect_vs_noop_same_headers_diagnostic: ratioOf(
                lastRepeats(results.introspect_h2load!),
                results.noop_bearer_h2load!,
              ),
            }
          : {}),
        introspect_vs_noop_grpcjs: ratioOf(results.introspect_grpcjs!, results.noop_grpcjs!),
        rotate_vs_noop_grpcjs: ratioOf(results.rotate_grpcjs!, results.noop_grpcjs!),
        rotate_vs_bare_driver_diagnostic: ratioOf(results.rotate_grpcjs!, results.bare_txn_driver!),
        introspect_grpcjs_vs_bare_introspect_queries: ratioOf(
          results.introspect_grpcjs!,
          results.bare_introspect_queries!,
        ),
      },
      targets: {
        introspect_vs_noop: {
          target: TARGETS.introspect_vs_noop,
          measured: introspectVsNoop.median,
          met: introspectVsNoop.median >= TARGETS.introspect_vs_noop,
        },
        rotate_vs_bare_txn: {
          target: TARGETS.rotate_vs_bare_txn,
          measured: rotateVsBare.median,
          met: rotateVsBare.median >= TARGETS.rotate_vs_bare_txn,
        },
        rotate_bound_vs_unbound: {
          target: TARGETS.rotate_bound_vs_unbound,
          measured: boundVsUnbound.median,
          met: boundVsUnbound.median >= TARGETS.rotate_bound_vs_unbound,
        },
        noop_vs_plain: {
          target: TARGETS.noop_vs_plain,
          measured: noopVsPlain.median,
          met: noopVsPlain.median >= TARGETS.noop_vs_plain,
        },
        introspect_vs_plain: {
          target: TARGETS.introspect_vs_plain,
          measured: introspectVsPlain.median,
          met: introspectVsPlain.median >= TARGETS.introspect_vs_plain,
        },
      },
    };
  } finally {
    loader?.stop();
    plainLoader?.stop();
    for (const extra of extraServers) await extra.stop();
    await plain?.stop();
    await serverOff?.stop();
    await server?.stop();
    await bare?.close();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
