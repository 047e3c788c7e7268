/**
 * The WatchExpiry clients of the fan-out bench, run as a child process (`fork`) so their work
 * does not share an event loop with the orchestration. Opens N streams over C grpc-js channels
 * (each its own HTTP/2 connection), all watching the same tokens, and records for every ROTATED event
 * the delay from its `occurred_at` (the commit time the server reads once the rotation's
 * transaction has begun) to its receipt here.
 */
import { fromBinary } from '@bufbuild/protobuf';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import { connect, type ClientHttp2Session } from 'node:http2';
import {
  ExpiryEventSchema,
  ExpiryEventType,
  ExpiryService,
  WatchExpiryRequestSchema,
  type ExpiryEvent,
} from '../src/gen/rotor/v1/expiry_service_pb.js';
import { grpcClient } from '../test/support/grpc-client.js';
import { grpcFrame } from './grpc.js';
import { percentile } from './stats.js';

/**
 * `grpc-js`: @grpc/grpc-js clients (the default). `http2`: a minimal gRPC client on node:http2
 * (request frame, length-prefixed response frames decoded with @bufbuild/protobuf, grpc-status
 * from the trailers), which costs the watcher process a fraction of grpc-js's per-message work,
 * so the latency figure is less about the measuring client (bench/README.md, "Fan-out").
 */
export type WatcherClient = 'grpc-js' | 'http2';

/** What the parent asks. */
export type WatchersJob =
  | {
      kind: 'open';
      address: string;
      bearer: string;
      tokenIds: string[];
      streams: number;
      channels: number;
      client: WatcherClient;
    }
  | { kind: 'await'; tokenId: string }
  | { kind: 'close' };

/** What the child answers, one reply per job. */
export type WatchersReply =
  | { kind: 'opened'; seconds: number }
  | { kind: 'received' }
  | { kind: 'closed'; samples: number; p50_ms: number; p99_ms: number; max_ms: number; errors: string[] }
  | { kind: 'failed'; error: string };

if (!process.send) {
  process.stderr.write('fanout-watchers.js must be forked with an IPC channel\n');
  process.exit(2);
}
const send = (r: WatchersReply) => process.send!(r);

let clients: ReturnType<typeof grpcClient<typeof ExpiryService>>[] = [];
let calls: { cancel(): void }[] = [];
let sessions: ClientHttp2Session[] = [];
const latencies: number[] = [];
const rotatedCount = new Map<string, number>();
const errors: string[] = [];
let waiter: { tokenId: string; need: number; resolve: () => void } | undefined;
let opened = 0;
let openWaiter: (() => void) | undefined;
let total = 0;
const heard = new WeakSet<object>();

function onEvent(this: object, e: ExpiryEvent): void {
  // A stream's first heartbeat proves it is registered in the server's feed.
  if (!heard.has(this)) {
    heard.add(this);
    if (++opened === total) openWaiter?.();
  }
  if (e.type !== ExpiryEventType.ROTATED) return;
  latencies.push(Date.now() - timestampMs(e.occurredAt!));
  const n = (rotatedCount.get(e.tokenId) ?? 0) + 1;
  rotatedCount.set(e.tokenId, n);
  if (waiter && waiter.tokenId === e.tokenId && n >= waiter.need) {
    const w = waiter;
    waiter = undefined;
    w.resolve();
  }
}

/** Opens the streams of `job` over raw HTTP/2 sessions (one per channel). */
function openHttp2(job: Extract<WatchersJob, { kind: 'open' }>): void {
  sessions = Array.from({ length: job.channels }, () => {
    const s = connect(`http://${job.address}`);
    s.on('error', (e) => errors.length < 10 && errors.push(`session: ${e.message}`));
    return s;
  });
  const body = grpcFrame(WatchExpiryRequestSchema, { tokenIds: job.tokenIds });
  for (let i = 0; i < job.streams; i++) {
    const req = sessions[i % sessions.length]!.request({
      ':method': 'POST',
      ':path': '/rotor.v1.ExpiryService/WatchExpiry',
      'content-type': 'application/grpc',
      te: 'trailers',
      authorization: `Bearer ${job.bearer}`,
    });
    const stream = {};
    let pending: Buffer = Buffer.alloc(0);
    req.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1);
        if (pending.length < 5 + len) break;
        onEvent.call(stream, fromBinary(ExpiryEventSchema, pending.subarray(5, 5 + len)));
        pending = pending.subarray(5 + len);
      }
    });
    req.on('trailers', (t) => {
      const code = Number(t['grpc-status']);
      if (code !== 0 && code !== 1 && errors.length < 10) errors.push(`${code} ${String(t['grpc-message'])}`);
    });
    req.on('error', (e) => errors.length < 10 && !req.destroyed && errors.push(e.message));
    req.end(body);
    calls.push({ cancel: () => req.close() });
  }
}

async function handle(job: WatchersJob): Promise<WatchersReply> {
  switch (job.kind) {
    case 'open': {
      const t0 = performance.now();
      total = job.streams;
      const allOpen = new Promise<void>((resolve) => (openWaiter = resolve));
      if (job.client === 'http2') {
        openHttp2(job);
        await allOpen;
        return { kind: 'opened', seconds: (performance.now() - t0) / 1000 };
      }
      // A local subchannel pool per client: each channel gets its own connection.
      clients = Array.from({ length: job.channels }, () =>
        grpcClient(ExpiryService, job.address, {
          'grpc.use_local_subchannel_pool': 1,
          'grpc.max_receive_message_length': 1 << 20,
        }),
      );
      for (let i = 0; i < job.streams; i++) {
        const call = clients[i % clients.length]!.stream(
          'watchExpiry',
          { tokenIds: job.tokenIds },
          { token: job.bearer },
        );
        call.on('data', onEvent.bind(call));
        call.on('error', (err: grpc.ServiceError) => {
          if (err.code !== 1 && errors.length < 10) errors.push(`${err.code} ${err.details}`);
        });
        calls.push(call);
        if (i % 500 === 499) await new Promise((r) => setImmediate(r));
      }
      await allOpen;
      return { kind: 'opened', seconds: (performance.now() - t0) / 1000 };
    }
    case 'await': {
      if ((rotatedCount.get(job.tokenId) ?? 0) < total) {
        await new Promise<void>((resolve) => (waiter = { tokenId: job.tokenId, need: total, resolve }));
      }
      return { kind: 'received' };
    }
    case 'close': {
      for (const c of calls) c.cancel();
      for (const c of clients) c.close();
      for (const s of sessions) s.close();
      calls = [];
      clients = [];
      sessions = [];
      const sorted = [...latencies].sort((a, b) => a - b);
      return {
        kind: 'closed',
        samples: sorted.length,
        p50_ms: percentile(sorted, 50),
        p99_ms: percentile(sorted, 99),
        max_ms: sorted[sorted.length - 1] ?? Number.NaN,
        errors,
      };
    }
  }
}

process.on('message', (job: WatchersJob) => {
  handle(job).then(send, (e: unknown) => send({ kind: 'failed', error: e instanceof Error ? e.message : String(e) }));
});
send({ kind: 'opened', seconds: 0 });
