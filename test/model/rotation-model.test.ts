/**
 * Model-based test of the rotation rules: random sequences of create, rotate (by secret, with and
 * without idempotency keys; by id), RevokeToken, RevokeFamily, authenticate, introspect, clock
 * moves (to just before, at and after every window end and expiry threshold) and passes of the
 * expiry scheduler, with and without retire on first use (an authentication or introspection of
 * the successor retires its predecessor), families created by model tokens (a tree: docs/rotation.md
 * "Lineage and cascade") and revocations with cascade and dry run, run against the reference model of docs/rotation.md and
 * docs/watch-expiry.md (rotation-model.ts) and against the application in process on each engine. Every
 * answer must match the model's, and after every command the database must hold the model's
 * token states and exactly the model's event log (rotation-system.ts `verify`).
 *
 * `npm test` runs a fixed set of seeds. `npm run test:deep` runs this file with ROTOR_DEEP_RUNS
 * sequences from a random seed (printed first; ROTOR_MODEL_SEED replays one). A failure prints
 * the seed, the path and the shrunk command sequence.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Caller } from '../../src/app/authenticate.js';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import { ExpiryScheduler } from '../../src/expiry/scheduler.js';
import { createLogger } from '../../src/runtime/logger.js';
import type { RotorApp } from '../../src/runtime/create-app.js';
import { scratchApp } from '../support/app.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';
import { commandArbitraries } from './rotation-commands.js';
import { RotationModel } from './rotation-model.js';
import { RealSystem, type TestClock } from './rotation-system.js';

/** Between the reuse graces the commands draw (0, 2, 8, 30 s), so both orders of the two windows occur. */
const RETRY_WINDOW_SECONDS = 4;
/**
 * The expiry scheduler's thresholds (largest first): the 6 s lifetimes the commands draw span only
 * the shorter one, the 60 s and 1 h ones both; no lifetime equals a threshold.
 */
const THRESHOLDS_SECONDS = [30, 5];
const MAX_COMMANDS = 60;
/** The fixed seeds of `npm test`, each run for RUNS_PER_SEED sequences. */
const SEEDS = [20261207, 1, 42, 7777];
const RUNS_PER_SEED = 50;

/** Answers the runs must reach, so that weaker generators fail here rather than test less. */
const REACHED = [
  'rotate presented: rotated',
  'rotate presented: replayed',
  'rotate presented: already_rotated',
  'rotate presented: reuse_detected (presented_again)',
  'rotate presented: reuse_detected (wrong_retry_keys)',
  'reuse for late wrong keys after racing ones',
  'rotate presented: token_revoked',
  'rotate presented: token_expired',
  'rotate by_id: rotated',
  'rotate by_id: replayed',
  'rotate by_id: already_rotated',
  'rotate by_id: not_rotatable',
  'retry_refused racing_rotation',
  'retry_refused wrong_idempotency_key',
  'revokeToken: revoked',
  'revokeToken: overlap_ended',
  'revokeToken: no change',
  'authenticate: ok',
  'first use retired the predecessor',
  'authenticate: ok (rotated)',
  'authenticate: token_revoked (rotated)',
  'authenticate: token_expired',
  'introspect: active (rotated)',
  'introspect: inactive',
  'tick: expiring_soon',
  'tick: expired',
  'tick: nothing due',
  'createChild: created',
  'createChild: unauthenticated',
  'createChild: unauthenticated (ancestor cascaded)',
  'createChild: permission_denied',
  'cascade: descendants',
  'cascade: no descendants',
  'dry run: descendants',
  'reuse cascaded to descendants',
  'interrupted cascade: descendants refused',
];

const deepRuns = Number(process.env.ROTOR_DEEP_RUNS ?? 0);
if (!Number.isSafeInteger(deepRuns) || deepRuns < 0) {
  throw new Error(`ROTOR_DEEP_RUNS must be a whole number of command sequences, got "${process.env.ROTOR_DEEP_RUNS}"`);
}
const deepSeed = process.env.ROTOR_MODEL_SEED
  ? Number(process.env.ROTOR_MODEL_SEED)
  : Date.now() ^ (Math.random() * 2 ** 31);
const runs: { seed: number; numRuns: number }[] =
  deepRuns > 0 ? [{ seed: deepSeed, numRuns: deepRuns }] : SEEDS.map((seed) => ({ seed, numRuns: RUNS_PER_SEED }));
if (deepRuns > 0)
  console.log(
    `rotation model: ${deepRuns} sequences from seed ${deepSeed} (ROTOR_MODEL_SEED=${deepSeed} replays them)`,
  );

describe.each(ENGINES)('rotation rules against the reference model on %s', (engine) => {
  let db: ScratchDatabase;
  let app: RotorApp;
  let admin: Caller;
  let scheduler: ExpiryScheduler;
  const clock: TestClock = { t: Date.UTC(2030, 0, 1) };
  const coverage = new Map<string, number>();

  beforeAll(async () => {
    db = await engineDatabase(engine);
    app = await scratchApp(db, { ROTOR_RETRY_WINDOW_SECONDS: String(RETRY_WINDOW_SECONDS) }, { now: () => clock.t });
    admin = {
      token: (await bootstrapAdmin(app, { ownerId: 'model-admin', lifetimeSeconds: 365 * 24 * 3600 })).record,
      peer: null,
    };
    // Passes run only when a Tick command asks; the first one runs now, so that every pass of
    // the sequences is a steady-state one (the first pass of a process reads a narrower range).
    scheduler = new ExpiryScheduler(
      app.store.events,
      () => clock.t,
      createLogger('error', () => undefined),
      { thresholdsSeconds: THRESHOLDS_SECONDS, intervalMs: 0 },
    );
    await scheduler.runOnce();
  });
  afterAll(async () => {
    await app?.store.close();
    await db?.drop();
  });

  it.each(runs)(
    `seed $seed: $numRuns command sequences agree with docs/rotation.md on ${engine}`,
    async ({ seed, numRuns }) => {
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(
          fc.commands(commandArbitraries(), { maxCommands: MAX_COMMANDS, size: 'medium' }),
          async (commands) => {
            // Each sequence starts an hour later with families of its own; the admin never expires in between.
            clock.t += 3_600_000;
            const startSequence = await RealSystem.lastSequence(app);
            await fc.asyncModelRun(
              () => ({
                model: new RotationModel(clock.t, RETRY_WINDOW_SECONDS, THRESHOLDS_SECONDS),
                real: Object.assign(new RealSystem(app, admin, clock, engine, startSequence, coverage), { scheduler }),
              }),
              commands,
            );
          },
        ),
        { seed, numRuns },
      );
      console.log(`rotation model on ${engine}, seed ${seed}: ${numRuns} sequences in ${Date.now() - started} ms`);
    },
    deepRuns > 0 ? 24 * 3_600_000 : 120_000,
  );

  it(`the sequences reached every answer of the rules on ${engine}`, () => {
    console.log(`rotation model coverage on ${engine}:`, Object.fromEntries([...coverage].sort()));
    expect([...REACHED].filter((kind) => !coverage.has(kind))).toEqual([]);
  });
});
