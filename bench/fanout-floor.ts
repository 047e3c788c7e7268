/**
 * Diagnostic of the fan-out scenario, no target: the floor Node's own HTTP/2 sets on this machine.
 * A bare `node:http2` server (no gRPC library, no Rotor) holds N open streams and writes one
 * 80-byte DATA frame to each of them, in slices of WAKE_SLICE streams per event-loop turn as
 * Rotor's feed wakes its watchers (src/expiry/subscription.ts), so the first slices are on the wire
 * while later ones are written; a bare `node:http2` client process, on as many connections as the
 * Rotor run uses, records the delay from the write (a timestamp in the frame) to receipt.
 * Reported next to the Rotor runs so they can be read against what the transport alone costs in
 * the same run: the server's CPU per fan-out and the delivery p50/p99, with no application work.
 *
 * Run as a child: `fanout-floor.js server <streams>` or `fanout-floor.js client <port> <streams> <connections>`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as http2 from 'node:http2';
import { WAKE_SLICE } from '../src/expiry/subscription.js';
import { cpuMs, percentile, rssMb, sleep } from './stats.js';

export interface FanoutFloorResult {
  streams: number;
  connections: number;
  events: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
  /** The server's CPU (user + system, all threads, /proc) per fan-out, over the whole event phase including the 200 ms pauses. */
  server_cpu_ms_per_event: number;
  rss_streams_open_mb: number;
}

type ServerMsg = { port: number } | { open: true };
type ClientMsg = { opened: true } | { received: true; latencies: number[] } | { error: string };

const role = process.argv[2];
if (role === 'server') floorServer(Number(process.argv[3]));
else if (role === 'client') floorClient(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));

function floorServer(streams: number): void {
  const open: http2.ServerHttp2Stream[] = [];
  const server = http2.createServer({ settings: { maxConcurrentStreams: 100_000 } });
  server.on('stream', (s: http2.ServerHttp2Stream) => {
    s.on('error', () => undefined);
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    open.push(s);
    if (open.length === streams) process.send!({ open: true } satisfies ServerMsg);
  });
  process.on('message', () => {
    const frame = Buffer.alloc(80, 1);
    frame.writeDoubleLE(Date.now(), 0);
    let next = 0;
    const slice = () => {
      const end = Math.min(open.length, next + WAKE_SLICE);
      for (; next < end; next++) open[next]!.write(frame);
      if (next < open.length) setImmediate(slice);
    };
    slice();
  });
  process.on('disconnect', () => process.exit(0));
  server.listen(0, '127.0.0.1', () =>
    process.send!({ port: (server.address() as { port: number }).port } satisfies ServerMsg),
  );
}

function floorClient(port: number, streams: number, connections: number): void {
  const sessions = Array.from({ length: connections }, () => http2.connect(`http://127.0.0.1:${port}`));
  let latencies: number[] = [];
  let opened = 0;
  for (let i = 0; i < streams; i++) {
    const s = sessions[i % connections]!.request({ ':method': 'POST', ':path': '/floor' }, { endStream: false });
    s.on('response', () => {
      if (++opened === streams) process.send!({ opened: true } satisfies ClientMsg);
    });
    s.on('data', (d: Buffer) => {
      latencies.push(Date.now() - d.readDoubleLE(0));
      if (latencies.length === streams) {
        process.send!({ received: true, latencies } satisfies ClientMsg);
        latencies = [];
      }
    });
    s.on('error', (e: Error) => process.send!({ error: String(e) } satisfies ClientMsg));
  }
  process.on('disconnect', () => process.exit(0));
}

function next<T>(child: ChildProcess, pick: (m: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T) => {
      if ((m as { error?: string }).error !== undefined)
        reject(new Error(`fan-out floor: ${(m as { error: string }).error}`));
      else if (pick(m)) {
        child.off('message', onMessage);
        resolve(m);
      }
    };
    child.on('message', onMessage);
  });
}

/** Runs the floor for `streams` streams over `connections` connections, `events` fan-outs 200 ms apart. */
export async function runFanoutFloor(streams: number, connections: number, events: number): Promise<FanoutFloorResult> {
  const self = new URL(import.meta.url);
  const server = fork(self, ['server', String(streams)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let client: ChildProcess | undefined;
  try {
    const { port } = (await next<ServerMsg>(server, (m) => 'port' in m)) as { port: number };
    const serverOpen = next<ServerMsg>(server, (m) => 'open' in m);
    client = fork(self, ['client', String(port), String(streams), String(connections)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await next<ClientMsg>(client, (m) => 'opened' in m);
    await serverOpen;
    await sleep(500);
    const all: number[] = [];
    const rss = rssMb(server.pid!);
    // The server's CPU as the Rotor runs count it (bench/fanout.ts): /proc, from before the first
    // write to after the last delivery, so late flushes (flow control) and GC count too.
    const cpu0 = cpuMs(server.pid!);
    for (let e = 0; e < events; e++) {
      const received = next<ClientMsg>(client, (m) => 'received' in m) as Promise<{ latencies: number[] }>;
      server.send({ fire: true });
      all.push(...(await received).latencies);
      await sleep(200);
    }
    const cpu = cpuMs(server.pid!) - cpu0;
    all.sort((a, b) => a - b);
    return {
      streams,
      connections,
      events,
      latency_p50_ms: percentile(all, 50),
      latency_p99_ms: percentile(all, 99),
      server_cpu_ms_per_event: Math.round(cpu / events),
      rss_streams_open_mb: rss,
    };
  } finally {
    if (client?.connected) client.disconnect();
    if (server.connected) server.disconnect();
  }
}
