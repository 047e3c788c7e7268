/**
 * What the event-order lock (migration 20261127_051_pg_event_commit_order) costs a bare PostgreSQL
 * rotation transaction: bench/bare-txn.ts's rotation on two scratch databases, one as migrated
 * (its event inserts take the lock) and one whose `token_events.sequence` default is put back to
 * plain `nextval`, interleaved round by round (alternating which goes first). Not part of
 * `npm run bench`; run it with `npm run build && node dist/bench/event-lock.js`.
 * Settings: BENCH_ROUNDS (5), BENCH_CONCURRENCY (32), BENCH_GRPCJS_REQUESTS (2000 per round).
 */
import knexFactory from 'knex';
import { openBareBaseline } from './bare-txn.js';
import { createBenchDatabase } from './postgres.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
const perRound = Number(process.env.BENCH_GRPCJS_REQUESTS ?? 2000);
const warmup = 500;

const dbs = [await createBenchDatabase(), await createBenchDatabase()];
try {
  const locked = await openBareBaseline('/tmp', rounds * perRound + warmup, dbs[0]!.url);
  const plain = await openBareBaseline('/tmp', rounds * perRound + warmup, dbs[1]!.url);
  const k = knexFactory({ client: 'pg', connection: dbs[1]!.url, pool: { min: 0, max: 1 } });
  await k.raw(`ALTER TABLE token_events ALTER COLUMN sequence SET DEFAULT nextval(pg_get_serial_sequence('token_events', 'sequence')::regclass)`);
  await k.destroy();
  await locked.rotation(warmup, concurrency);
  await plain.rotation(warmup, concurrency);
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const first = r % 2 === 0 ? locked : plain;
    const second = first === locked ? plain : locked;
    const a = await first.rotation(perRound, concurrency);
    const b = await second.rotation(perRound, concurrency);
    const [l, p] = first === locked ? [a, b] : [b, a];
    ratios.push(l.rps / p.rps);
    console.log(`round ${r + 1}: with lock ${l.rps.toFixed(0)} rps (p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms), without ${p.rps.toFixed(0)} rps (p50 ${p.p50_ms} ms, p99 ${p.p99_ms} ms), ratio ${ratios.at(-1)!.toFixed(3)}`);
  }
  const sorted = [...ratios].sort((x, y) => x - y);
  console.log(`with lock ÷ without, median of ${rounds} rounds: ${sorted[Math.floor(rounds / 2)]!.toFixed(2)} (${ratios.map((x) => x.toFixed(2)).join(' / ')}), ${concurrency} in flight`);
  await locked.close();
  await plain.close();
} finally {
  for (const d of dbs) await d.drop();
}
