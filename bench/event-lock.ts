/**
 * What the event-order lock (migration 20261127_051_pg_event_commit_order) costs a bare PostgreSQL
 * rotation transaction: bench/bare-txn.ts's rotation on two scratch databases, one as migrated
 * (its event inserts take the lock) and one whose `token_events.sequence` default is put back to
 * plain `nextval`, interleaved round by round (alternating which goes first). Not part of
 * `npm run bench`; run it with `npm run build && node dist/bench/event-lock.js`.
 * Settings: BENCH_ROUNDS (5), BENCH_CONCURRENCY (32), BENCH_GRPCJS_REQUESTS (2000 per round),
 * BENCH_READERS (0): loops that settle the log back to back during the locked rounds, as the
 * WatchExpiry feed of a replica does while its watchers see a steady stream of events (the worst
 * case: an idle feed settles once per poll interval).
 */
import knexFactory from 'knex';
import { KnexEventRepository } from '../src/store/event-repository.js';
import { openBareBaseline } from './bare-txn.js';
import { createBenchDatabase } from './postgres.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const perRound = Number(process.env.BENCH_GRPCJS_REQUESTS ?? 2000);
const warmup = 500;
const readers = Number(process.env.BENCH_READERS ?? 0);

const dbs = [await createBenchDatabase(), await createBenchDatabase()];
try {
  const locked = await openBareBaseline('/tmp', rounds * perRound + warmup, dbs[0]!.url);
  const plain = await openBareBaseline('/tmp', rounds * perRound + warmup, dbs[1]!.url);
  const k = knexFactory({ client: 'pg', connection: dbs[1]!.url, pool: { min: 0, max: 1 } });
  await k.raw(
    `ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT nextval(pg_get_serial_sequence('token_events', 'sequence')::regclass)`,
  );
  await k.destroy();
  const reader = knexFactory({ client: 'pg', connection: dbs[0]!.url, pool: { min: 0, max: Math.max(1, readers) } });
  await locked.rotation(warmup, concurrency);
  await plain.rotation(warmup, concurrency);
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const first = r % 2 === 0 ? locked : plain;
    const second = first === locked ? plain : locked;
    const run = async (side: typeof locked) => {
      if (side !== locked || readers === 0) return side.rotation(perRound, concurrency);
      const events = new KnexEventRepository(reader);
      let stop = false;
      let settles = 0;
      const loops = Array.from({ length: readers }, async () => {
        while (!stop) {
          await events.latestSequence();
          settles++;
        }
      });
      const t0 = performance.now();
      const result = await side.rotation(perRound, concurrency);
      stop = true;
      await Promise.all(loops);
      console.log(
        `  ${readers} reader(s) settled the log ${Math.round((settles * 1000) / (performance.now() - t0))} times/s`,
      );
      return result;
    };
    const a = await run(first);
    const b = await run(second);
    const [l, p] = first === locked ? [a, b] : [b, a];
    ratios.push(l.rps / p.rps);
    console.log(
      `round ${r + 1}: with lock ${l.rps.toFixed(0)} rps (p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms), without ${p.rps.toFixed(0)} rps (p50 ${p.p50_ms} ms, p99 ${p.p99_ms} ms), ratio ${ratios.at(-1)!.toFixed(3)}`,
    );
  }
  const sorted = [...ratios].sort((x, y) => x - y);
  console.log(
    `with lock ÷ without, median of ${rounds} rounds: ${sorted[Math.floor(rounds / 2)]!.toFixed(2)} (${ratios.map((x) => x.toFixed(2)).join(' / ')}), ${concurrency} in flight`,
  );
  await reader.destroy();
  await locked.close();
  await plain.close();
} finally {
  for (const d of dbs) await d.drop();
}
