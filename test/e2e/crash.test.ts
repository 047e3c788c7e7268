/**
 * Crash safety: a `rotor serve` process is killed with SIGKILL in the middle of a stream
 * of rotations (300, over 6 families, each family's client rotating in a loop with an
 * idempotency key and retrying with the SAME key after a failure, as the agent does). A new
 * process is started on the same database and the clients carry on. Afterwards the database is
 * read directly and every family is checked:
 *
 * - tokens: exactly one active head; the family is one chain root → … → head, each member's
 *   successor pointing at the next; no successor exists whose predecessor is not rotated to it;
 *   the chain is exactly as long as the rotations the client saw succeed (a rotation committed
 *   just before the kill, whose answer was lost, came back unchanged on the retry);
 * - the client's last secret is the head;
 * - events (table `token_events`; WatchExpiry: docs/watch-expiry.md): one `created` event per token, one
 *   `rotated` event per rotated token naming its successor, in chain order of sequence;
 * - WatchExpiry: one watcher per family (by family id or owner id) streams from the start of the
 *   log on the killed process, its stream ends with UNAVAILABLE, and it resumes on the new
 *   process with `after_sequence` = the last sequence it received, at once, while the other
 *   clients keep rotating. What it received before and after is exactly the family's committed
 *   log: nothing missing, nothing twice, in order. On PostgreSQL a sequence can skip numbers (a
 *   transaction killed with the process had drawn them and rolled back); the feed reads the log
 *   only up to its settled sequence (migration 20261127_051_pg_event_commit_order), so such a
 *   hole is final and the reader moves past it at once;
 * - resuming from the log: for every sequence number k a watcher could have stopped at, reading
 *   the log after k returns exactly the committed events with a higher sequence.
 */
import { Code } from '@connectrpc/connect';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExpiryEventType } from '../../src/gen/rotor/v1/expiry_service_pb.js';
import { TokenKind } from '../../src/gen/rotor/v1/token_pb.js';
import { KnexEventRepository } from '../../src/store/event-repository.js';
import { openDatabase } from '../../src/store/database.js';
import { ENGINES, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { runCli, startServe, type ServeProcess } from '../support/process.js';
import { addressOf } from '../support/replicas.js';
import { RpcFailure, grpcApi, newKey, type Api, type WatchStream } from '../support/rotor-api.js';
import { inMs } from '../support/server.js';

const FAMILIES = 6;
const PER_FAMILY = 50;
const KILL_AFTER = 120;

interface Row {
  id: string;
  family_id: string;
  previous_id: string | null;
  successor_id: string | null;
  revoked_at: string | number | null;
  revoke_reason: string | null;
}
interface EventRow {
  sequence: string | number;
  type: string;
  token_id: string;
  family_id: string;
  successor_id: string | null;
}

describe.each(ENGINES)(
  'SIGKILL in the middle of a stream of rotations, restart, every family consistent, on %s',
  (engine) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'rotor-crash-'));
    let db: ScratchDatabase | undefined;
    let env: Record<string, string>;
    let server: ServeProcess | undefined;

    beforeAll(async () => {
      env = { ROTOR_DATA_DIR: dataDir, ROTOR_SECRET: randomBytes(32).toString('base64url'), ROTOR_LOG_LEVEL: 'info' };
      if (engine === 'postgres') {
        db = await scratchDatabase();
        env.ROTOR_DATABASE_URL = db.url;
      }
    });
    afterAll(async () => {
      if (server && server.child.exitCode === null && server.child.signalCode === null) await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
      await db?.drop();
    });

    it(`${FAMILIES} families × ${PER_FAMILY} rotations, SIGKILL after ${KILL_AFTER}, restart on the same database`, async () => {
      const boot = await runCli(['bootstrap', '--create', '--owner', 'ops'], env);
      expect(boot.code).toBe(0);
      const admin = boot.stdout.trim();
      server = await startServe(env);
      let api: Api = grpcApi(addressOf(server));

      const families: { familyId: string; secret: string; done: number; retriedAfterFailure: number }[] = [];
      for (let i = 0; i < FAMILIES; i++) {
        const r = await api.createToken(
          {
            kind: TokenKind.SERVICE_ACCOUNT,
            ownerId: `crash-${i}`,
            name: 'app',
            scopes: ['rotor:rotate'],
            expiresAt: inMs(Date.now(), 86_400_000),
          },
          admin,
        );
        families.push({ familyId: r.token!.familyId, secret: r.secret, done: 0, retriedAfterFailure: 0 });
      }

      // One watcher per family, connected through the whole run: by family id or by owner id
      // (the feed's two indexes), from the start of the log.
      const selectionOf = (i: number) =>
        i % 2 === 0 ? { familyId: families[i]!.familyId } : { ownerId: `crash-${i}` };
      const before: WatchStream[] = families.map((_, i) =>
        api.watchExpiry({ ...selectionOf(i), afterSequence: 0n }, admin),
      );
      let resumed: WatchStream[] = [];

      const clients: Api[] = [];
      let total = 0;
      let killed: Promise<void> | undefined;
      const killAndRestart = async () => {
        const old = server!;
        const exited = new Promise((r) => old.child.once('exit', r));
        old.child.kill('SIGKILL');
        await exited;
        expect(old.child.signalCode).toBe('SIGKILL');
        // The streams of the killed process end; each watcher keeps the last sequence it received.
        const ends = await Promise.all(before.map((w) => w.ended));
        for (const f of ends) expect(f?.code).toBe(Code.Unavailable);
        server = await startServe(env);
        clients.push(api);
        api = grpcApi(addressOf(server));
        // They resume on the new process at once, while the rotations go on.
        resumed = before.map((w, i) => {
          const last = events(w).at(-1)?.sequence ?? 0n;
          return api.watchExpiry({ ...selectionOf(i), afterSequence: last }, admin);
        });
      };

      /** One family's client: rotate, and after any transport failure retry with the same key. */
      const drive = async (f: (typeof families)[number]) => {
        let key: string | undefined;
        while (f.done < PER_FAMILY) {
          key ??= newKey();
          try {
            const r = await api.rotateToken({ idempotencyKey: key }, f.secret);
            f.secret = r.secret;
            f.done++;
            key = undefined;
            if (++total === KILL_AFTER) killed = killAndRestart();
          } catch (e) {
            if (!(e instanceof RpcFailure) || e.code !== Code.Unavailable) throw e;
            f.retriedAfterFailure++;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      };
      await Promise.all(families.map(drive));
      await killed;
      expect(total).toBe(FAMILIES * PER_FAMILY);
      // The kill happened mid-stream: some calls were in flight and had to be retried.
      expect(families.reduce((n, f) => n + f.retriedAfterFailure, 0)).toBeGreaterThan(0);

      // The restarted process serves every family's last secret as its active head.
      for (const f of families) {
        const seen = await api.introspectToken({ token: f.secret }, admin);
        expect(seen.active).toBe(true);
        expect(seen.familyId).toBe(f.familyId);
      }

      const { knex } = openDatabase({ url: env.ROTOR_DATABASE_URL ?? `sqlite://${join(dataDir, 'rotor.db')}` });
      try {
        // Every resuming watcher: what it got before the kill and after resuming is exactly the
        // committed log of its selection, in order, with nothing missing and nothing twice.
        expect(resumed).toHaveLength(FAMILIES);
        for (const [i, f] of families.entries()) {
          const log = (
            await knex<EventRow>('token_events').where({ family_id: f.familyId }).orderBy('sequence').pluck('sequence')
          ).map(BigInt);
          const top = log.at(-1)!;
          await resumed[i]!.until((r) => r.some((e) => e.sequence === top), 20_000, `family ${i}'s last event`);
          const got = [...events(before[i]!), ...events(resumed[i]!)].map((e) => e.sequence);
          expect(got).toEqual(log);
          expect(events(before[i]!).length).toBeGreaterThan(0);
          expect(events(resumed[i]!).length).toBeGreaterThan(0);
          resumed[i]!.cancel();
        }
        api.close();
        for (const c of clients) c.close();
        const gaps = await checkEveryFamily(knex, families);
        const streamed = [before, resumed].map((ws) => ws.reduce((n, w) => n + events(w).length, 0));
        console.info(
          `crash test on ${engine}: ${total} rotations, ${families.reduce((n, f) => n + f.retriedAfterFailure, 0)} retried after the kill, ${gaps} unused sequence numbers in the event log; ` +
            `${FAMILIES} watchers got ${streamed[0]} events before the kill and ${streamed[1]} after resuming`,
        );
        if (engine === 'sqlite') expect(gaps).toBe(0);
      } finally {
        await knex.destroy();
      }
      // About 6 s alone (two server starts, 300 rotations); the default 30 s is too close under load.
    }, 90_000);
  },
);

/** The events (not heartbeats) a watcher received. */
function events(w: WatchStream) {
  return w.received.filter((e) => e.type !== ExpiryEventType.HEARTBEAT);
}

/** The checks of the file comment; returns how many sequence numbers the log skips. */
async function checkEveryFamily(knex: Knex, families: { familyId: string; secret: string }[]): Promise<number> {
  const allEvents = (await knex<EventRow>('token_events').select('*').orderBy('sequence')).map((e) => ({
    ...e,
    sequence: Number(e.sequence),
  }));
  for (const f of families) {
    const rows = await knex<Row>('tokens')
      .where({ family_id: f.familyId })
      .select('id', 'family_id', 'previous_id', 'successor_id', 'revoked_at', 'revoke_reason');
    const byId = new Map(rows.map((r) => [r.id, r]));
    const heads = rows.filter((r) => r.revoked_at === null);
    // "Exactly one active head, or the whole family revoked by reuse": nothing here reuses a
    // token (every retry carries its key), so the family must still have its one head.
    expect(heads).toHaveLength(1);

    // One chain: root → … → head.
    const roots = rows.filter((r) => r.previous_id === null);
    expect(roots).toHaveLength(1);
    const chain = [roots[0]!];
    while (chain.at(-1)!.successor_id !== null) chain.push(byId.get(chain.at(-1)!.successor_id!)!);
    expect(chain).toHaveLength(PER_FAMILY + 1);
    expect(chain.length).toBe(rows.length);
    expect(chain.at(-1)!.id).toBe(heads[0]!.id);
    for (const r of rows) {
      if (r.previous_id === null) continue;
      const prev = byId.get(r.previous_id)!;
      expect(prev.successor_id).toBe(r.id);
      expect(prev.revoke_reason).toBe('rotated');
      expect(prev.revoked_at).not.toBeNull();
    }

    // Events: one created per token, one rotated per rotated token naming its successor, in chain order.
    const events = allEvents.filter((e) => e.family_id === f.familyId);
    let lastRotated = 0;
    for (const [i, t] of chain.entries()) {
      const created = events.filter((e) => e.token_id === t.id && e.type === 'created');
      expect(created).toHaveLength(1);
      const rotated = events.filter((e) => e.token_id === t.id && e.type === 'rotated');
      if (i === chain.length - 1) {
        expect(rotated).toHaveLength(0);
        continue;
      }
      expect(rotated).toHaveLength(1);
      expect(rotated[0]!.successor_id).toBe(chain[i + 1]!.id);
      expect(rotated[0]!.sequence).toBeGreaterThan(lastRotated);
      lastRotated = rotated[0]!.sequence;
    }
    // A retry after the kill whose rotation had committed was answered by replay: one `replayed`
    // event each, naming the successor of the rotated token it retried (docs/rotation.md rule 3).
    const replayed = events.filter((e) => e.type === 'replayed');
    for (const e of replayed) expect(e.successor_id).toBe(byId.get(e.token_id)!.successor_id);
    expect(events).toHaveLength(chain.length + (chain.length - 1) + replayed.length);
    expect(events.filter((e) => !['created', 'rotated', 'replayed'].includes(e.type))).toEqual([]);

    // Resuming after any sequence returns every later committed event of the family, in order.
    const repo = new KnexEventRepository(knex);
    for (const k of [0, ...events.map((e) => e.sequence)]) {
      const after = await repo.list({ familyId: f.familyId, afterSequence: k }, 1000);
      expect(after.map((e) => e.sequence)).toEqual(events.filter((e) => e.sequence > k).map((e) => e.sequence));
    }
  }
  const seqs = allEvents.map((e) => e.sequence);
  return seqs.length === 0 ? 0 : seqs[seqs.length - 1]! - seqs[0]! + 1 - seqs.length;
}
