/**
 * The fan-out scenario of `npm run bench` (target: 10,000 streams under 300 MB RSS, p99 delivery under 100 ms;
 * bench/README.md): N WatchExpiry streams over
 * grpc-js on the gRPC port of a `rotor serve` child process, all watching the same R tokens
 * (token_ids, as an agent watches its token); the bench rotates them one at a time and the
 * watcher child records, for each of the
 * N × R ROTATED deliveries, the delay from the event's `occurred_at` to its receipt. The server's
 * RSS (VmRSS of the child process, /proc) is read idle, with the N streams open, and after the
 * rotations. Each N gets a fresh server, so RSS figures do not carry over.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { TokenKind } from '../src/gen/rotor/v1/token_pb.js';
import { TokenService } from '../src/gen/rotor/v1/token_service_pb.js';
import type { WatcherClient, WatchersJob, WatchersReply } from './fanout-watchers.js';
import { benchClient } from './grpc.js';
import { bootstrap, freePort, rotorEnv, startServer } from './server.js';
import { cpuMs, rssMb, sleep } from './stats.js';

/** Figures of one N. */
export interface FanoutResult {
  streams: number;
  client: WatcherClient;
  channels: number;
  rotations: number;
  open_seconds: number;
  deliveries: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
  latency_max_ms: number;
  /**
   * Server CPU time (user + system, all its threads) per rotation while the rotations ran: the
   * commit plus the fan-out of one event to every stream. Contention on the machine stretches the
   * latency figures far more than this one.
   */
  server_cpu_ms_per_rotation: number;
  /** The same for the watcher process: receiving and decoding one event on every stream. */
  watchers_cpu_ms_per_rotation: number;
  rss_idle_mb: number;
  rss_streams_open_mb: number;
  rss_after_rotations_mb: number;
  /** VmHWM: the highest RSS the server reached (opening the streams is the usual peak). */
  rss_peak_mb: number;
  stream_errors: string[];
}

class Watchers {
  private queue: ((r: WatchersReply) => void)[] = [];
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (r: WatchersReply) => this.queue.shift()?.(r));
  }
  static start(): Promise<Watchers> {
    const child = fork(new URL('./fanout-watchers.js', import.meta.url), [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      execArgv: ['--max-old-space-size=2048'],
    });
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve(new Watchers(child)));
      child.once('exit', (code) => reject(new Error(`watcher child exited with ${code} before starting`)));
    });
  }
  ask<K extends WatchersReply['kind']>(job: WatchersJob, expect: K): Promise<Extract<WatchersReply, { kind: K }>> {
    return new Promise((resolve, reject) => {
      this.queue.push((r) =>
        r.kind === expect
          ? resolve(r as Extract<WatchersReply, { kind: K }>)
          : reject(new Error(`watchers: ${JSON.stringify(r)}`)),
      );
      this.child.send(job);
    });
  }
  get pid(): number {
    return this.child.pid!;
  }
  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }
}

/** Runs the fan-out scenario for `streams` watchers in a fresh server under `work`. */
export async function runFanout(
  work: string,
  streams: number,
  rotations: number,
  client: WatcherClient,
  progress: (m: string) => void,
): Promise<FanoutResult> {
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  // A short heartbeat: a stream's first one tells the watcher child that the stream is registered.
  // Every stream is opened with the one admin bearer, so the caps on open streams per token and
  // per owner (16 and 256 by default) are raised to the stream count, and the process cap with them.
  const cap = String(streams);
  const env = {
    ...rotorEnv(join(work, `fanout-${streams}-${client}`), grpcPort, httpPort),
    ROTOR_EXPIRY_SCAN_INTERVAL_MS: '0',
    ROTOR_WATCH_HEARTBEAT_SECONDS: '2',
    ROTOR_WATCH_MAX_STREAMS_PER_TOKEN: cap,
    ROTOR_WATCH_MAX_STREAMS_PER_OWNER: cap,
    ROTOR_WATCH_MAX_STREAMS_PER_PROCESS: cap,
    NODE_OPTIONS: process.env.BENCH_SERVER_NODE_OPTIONS ?? '',
  };
  const address = `127.0.0.1:${grpcPort}`;
  const admin = await bootstrap(env);
  const server = await startServer(env, address);
  const watchers = await Watchers.start();
  const api = benchClient(TokenService, address);
  try {
    const pid = server.child.pid!;
    const tokens: { id: string; secret: string }[] = [];
    for (let i = 0; i < rotations; i++) {
      const created = (await api.call(
        'createToken',
        {
          kind: TokenKind.SERVICE_ACCOUNT,
          ownerId: 'fanout',
          name: `watched-${i}`,
          scopes: ['rotor:rotate'],
          expiresAt: timestampFromMs(Date.now() + 3_600_000),
        },
        admin,
      )) as { token: { id: string }; secret: string };
      tokens.push({ id: created.token.id, secret: created.secret });
    }
    await sleep(500);
    const rssIdle = rssMb(pid);
    const channels = Math.max(1, Math.ceil(streams / 1000));
    progress(`fan-out: opening ${streams} streams over ${channels} ${client} connections`);
    const opened = await watchers.ask(
      { kind: 'open', address, bearer: admin, tokenIds: tokens.map((t) => t.id), streams, channels, client },
      'opened',
    );
    await sleep(500);
    const rssOpen = rssMb(pid);
    const [cpu0, wcpu0] = [cpuMs(pid), cpuMs(watchers.pid)];
    for (const [r, t] of tokens.entries()) {
      const delivered = watchers.ask({ kind: 'await', tokenId: t.id }, 'received');
      await api.call('rotateToken', { idempotencyKey: `bench-fanout-rotation-${r}-${streams}` }, t.secret);
      await delivered;
      await sleep(200);
    }
    const [cpu1, wcpu1] = [cpuMs(pid), cpuMs(watchers.pid)];
    const rssAfter = rssMb(pid);
    const rssPeak = rssMb(pid, 'VmHWM');
    const closed = await watchers.ask({ kind: 'close' }, 'closed');
    const result: FanoutResult = {
      streams,
      client,
      channels,
      rotations,
      open_seconds: Math.round(opened.seconds * 100) / 100,
      deliveries: closed.samples,
      latency_p50_ms: closed.p50_ms,
      latency_p99_ms: closed.p99_ms,
      latency_max_ms: closed.max_ms,
      server_cpu_ms_per_rotation: Math.round((cpu1 - cpu0) / rotations),
      watchers_cpu_ms_per_rotation: Math.round((wcpu1 - wcpu0) / rotations),
      rss_idle_mb: rssIdle,
      rss_streams_open_mb: rssOpen,
      rss_after_rotations_mb: rssAfter,
      rss_peak_mb: rssPeak,
      stream_errors: closed.errors,
    };
    progress(
      `  fanout ${String(streams).padStart(6)} streams (${client}): p50 ${result.latency_p50_ms} ms, p99 ${result.latency_p99_ms} ms, CPU per rotation: server ${result.server_cpu_ms_per_rotation} ms, watchers ${result.watchers_cpu_ms_per_rotation} ms, RSS ${rssIdle} → ${rssOpen} → ${rssAfter} MB (peak ${rssPeak})`,
    );
    return result;
  } finally {
    api.close();
    watchers.stop();
    await server.stop();
  }
}
