/**
 * Storage baselines on the same engine and settings as the server (src/store/database.ts, a
 * separate SQLite file or PostgreSQL database with the migrations applied), with no RPC, auth or
 * mapping around them:
 *   - `rotation`: one knex transaction per iteration running exactly the statements a
 *     self-rotation of a fresh token runs (src/app/rotation-service.ts `rotate` + `commitRotation`);
 *   - `rotationDriver` (diagnostic, no target): the writes of the same rotation through
 *     `DirectRotationWriter` (src/store/direct-rotation.ts), i.e. on the driver without knex and
 *     without the lookup, exactly what the server's fast path sends;
 *   - `introspection` (diagnostic, no target): the statements one IntrospectToken call runs
 *     (src/app/authenticate.ts `authenticate` + src/app/token-service.ts `introspect`).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Knex } from 'knex';
import { mintSuccessor, mintToken } from '../src/domain/new-token.js';
import { DEFAULT_LIMITS, resolvePolicy } from '../src/domain/policy.js';
import { createTokenKeys } from '../src/domain/token-keys.js';
import type { RotationCommit } from '../src/app/store-ports.js';
import type { NewTokenEvent } from '../src/domain/token-event.js';
import { migrate, openDatabase, type Engine } from '../src/store/database.js';
import { DirectRotationWriter } from '../src/store/direct-rotation.js';
import { toEventRow } from '../src/store/rotation-statements.js';
import { KnexTokenRepository } from '../src/store/token-repository.js';
import { toRow, type TokenRow } from '../src/store/token-row.js';
import { closedLoop, summarize, type ScenarioResult } from './stats.js';

/** Everything one rotation iteration writes, prepared before timing starts. */
interface Iteration {
  digest: string;
  currentId: string;
  successorRow: TokenRow;
  eventRows: Record<string, unknown>[];
  /** The same rotation as `Store.commitRotation` takes it. */
  commit: RotationCommit;
}

export interface BareBaseline {
  /** Rotates the next `count` seeded tokens, `concurrency` transactions in flight. */
  rotation(count: number, concurrency: number): Promise<ScenarioResult>;
  /** Diagnostic: the next `count` seeded tokens through the server's driver-level commit. */
  rotationDriver(count: number, concurrency: number): Promise<ScenarioResult>;
  /** Runs the statements of `count` IntrospectToken calls, `concurrency` in flight. */
  introspection(count: number, concurrency: number): Promise<ScenarioResult>;
  close(): Promise<void>;
}

/**
 * Opens the baseline's own database, applies the migrations and seeds `rotations` fresh tokens
 * (not timed): `<dir>/bare.db` on SQLite, or `postgresUrl` (a scratch database; the same pool
 * settings as the server) on PostgreSQL.
 */
export async function openBareBaseline(dir: string, rotations: number, postgresUrl?: string): Promise<BareBaseline> {
  const { knex, engine } = openDatabase({ url: postgresUrl ?? `sqlite://${join(dir, 'bare.db')}` });
  try {
    await migrate(knex);
    return await seed(knex, rotations, engine);
  } catch (e) {
    await knex.destroy();
    throw e;
  }
}

async function seed(knex: Knex, rotations: number, engine: Engine): Promise<BareBaseline> {
  const keys = createTokenKeys(randomBytes(32));
  const random = (n: number) => new Uint8Array(randomBytes(n));
  const now = Date.now();
  const policy = resolvePolicy({}, DEFAULT_LIMITS);
  const mint = (name: string, scopes: string[]) =>
    mintToken(
      {
        kind: 'service_account',
        ownerId: 'bench',
        name,
        description: '',
        scopes,
        audiences: [],
        policy,
        expiresAt: now + 3_600_000,
      },
      now,
      random,
      keys,
    ).record;
  // The introspection pair: a bearer used a moment ago (so its touch UPDATE matches no row, as on
  // a busy server) and the token being introspected.
  const bearer = { ...mint('admin', ['rotor:admin', 'rotor:introspect']), lastUsedAt: now };
  const target = mint('introspected', ['orders:read']);
  const iterations: Iteration[] = [];
  // Seeding runs through the real repository, so the rows have the real shape.
  await knex.transaction(async (trx) => {
    const repo = new KnexTokenRepository(trx);
    await repo.insert(bearer);
    await repo.insert(target);
    for (let i = 0; i < rotations; i++) {
      const current = mint(`pool-${i}`, ['rotor:rotate']);
      await repo.insert(current);
      const successor = mintSuccessor(
        current,
        { scopes: current.scopes, expiresAt: now + 3_600_000 },
        now,
        random,
        random,
        keys,
      ).record;
      const events: NewTokenEvent[] = [
        {
          type: 'rotated',
          tokenId: current.id,
          familyId: current.familyId,
          successorId: successor.id,
          actor: current.id,
          peer: '127.0.0.1:50000',
          reason: 'rotated',
          occurredAt: now,
        },
        {
          type: 'created',
          tokenId: successor.id,
          familyId: current.familyId,
          successorId: null,
          actor: current.id,
          peer: '127.0.0.1:50000',
          reason: 'rotated',
          occurredAt: now,
        },
      ];
      iterations.push({
        digest: current.secretDigest,
        currentId: current.id,
        successorRow: toRow(successor),
        eventRows: events.map(toEventRow),
        commit: {
          currentId: current.id,
          successor,
          rotationKeyDigest: null,
          clock: Date.now,
          events: (at) => events.map((e) => ({ ...e, occurredAt: at })),
        },
      });
    }
  });

  const rotateOnce = async (it: Iteration) => {
    await knex.transaction(async (trx) => {
      // rotate(): load the presented token by its keyed digest. A fresh token has no
      // successor_id, so rotate() issues no successor lookup for it, and neither do we.
      const row = await trx('tokens').where({ secret_digest: it.digest }).first();
      if (!row) throw new Error('bare transaction: seeded token not found');
      // commitRotation(): compare-and-set the current row, insert the successor, two events.
      const t = Date.now();
      const n = await trx('tokens').where({ id: it.currentId }).whereNull('revoked_at').update({
        revoked_at: t,
        rotated_at: t,
        revoke_reason: 'rotated',
        successor_id: it.successorRow.id,
        rotation_key_digest: null,
        last_used_at: t,
      });
      if (n !== 1) throw new Error('bare transaction: compare-and-set lost');
      await trx('tokens').insert(it.successorRow);
      await trx('token_events').insert(it.eventRows);
    });
  };

  const introspectOnce = async () => {
    const caller = await knex('tokens').where({ secret_digest: bearer.secretDigest }).first();
    if (!caller) throw new Error('bare introspection: bearer not found');
    // authenticate(): touchLastUsed, fired without awaiting; matches no row while last use is recent.
    const t = Date.now();
    void knex('tokens')
      .where({ id: bearer.id })
      .andWhere((q) => q.whereNull('last_used_at').orWhere('last_used_at', '<', t - 60_000))
      .update({ last_used_at: t })
      .catch(() => undefined);
    const row = await knex('tokens').where({ secret_digest: target.secretDigest }).first();
    if (!row) throw new Error('bare introspection: token not found');
  };

  const direct = new DirectRotationWriter(knex, engine);
  const directOnce = async (it: Iteration) => {
    if (!(await direct.commit(it.commit)).won) throw new Error('driver baseline: compare-and-set lost');
  };

  let used = 0;
  const take = (count: number) => {
    if (used + count > iterations.length) throw new Error('bare baseline: seeded token pool exhausted');
    used += count;
    return iterations.slice(used - count, used);
  };
  return {
    async rotation(count, concurrency) {
      const slice = take(count);
      const { latenciesMs, seconds } = await closedLoop(count, concurrency, (i) => rotateOnce(slice[i]!));
      return summarize(latenciesMs, seconds);
    },
    async rotationDriver(count, concurrency) {
      const slice = take(count);
      const { latenciesMs, seconds } = await closedLoop(count, concurrency, (i) => directOnce(slice[i]!));
      return summarize(latenciesMs, seconds);
    },
    async introspection(count, concurrency) {
      const { latenciesMs, seconds } = await closedLoop(count, concurrency, introspectOnce);
      return summarize(latenciesMs, seconds);
    },
    async close() {
      await direct.close();
      await knex.destroy();
    },
  };
}
