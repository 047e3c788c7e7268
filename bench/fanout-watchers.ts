/**
 * The WatchExpiry clients of the fan-out bench, run as a child process (`fork`) so their work
 * does not share an event loop with the orchestration. Opens N streams over C grpc-js channels
 * (each its own HTTP/2 connection), all watching the same tokens, and records for every ROTATED event
 * the delay from its `occurred_at` (taken by the server just before the rotation's transaction)
 * to its receipt here.
 */
import { timestampMs } from '@bufbuild/protobuf/wkt';
import type * as grpc from '@grpc/grpc-js';
import { ExpiryEventType, ExpiryService, type ExpiryEvent } from '../src/gen/rotor/v1/expiry_service_pb.js';
import { grpcClient } from '../test/support/grpc-client.js';
import { percentile } from './stats.js';

/** What the parent asks. */
export type WatchersJob =
  | { kind: 'open'; address: string; bearer: string; tokenIds: string[]; streams: number; channels: number }
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
let calls: grpc.ClientReadableStream<ExpiryEvent>[] = [];
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

async function handle(job: WatchersJob): Promise<WatchersReply> {
  switch (job.kind) {
    case 'open': {
      const t0 = performance.now();
      total = job.streams;
      // A local subchannel pool per client: each channel gets its own connection.
      clients = Array.from({ length: job.channels }, () =>
        grpcClient(ExpiryService, job.address, { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 1 << 20 }),
      );
      const allOpen = new Promise<void>((resolve) => (openWaiter = resolve));
      for (let i = 0; i < job.streams; i++) {
        const call = clients[i % clients.length]!.stream('watchExpiry', { tokenIds: job.tokenIds }, { token: job.bearer });
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
      calls = [];
      clients = [];
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
