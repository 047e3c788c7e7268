/**
 * Shared knobs of the fuzz files (test/fuzz/): how many runs each property gets, from which seed,
 * and the row counts that prove a refused input wrote nothing.
 *
 * `npm test` runs every property from the fixed FUZZ_SEED with the file's own bounded run count.
 * `npm run test:deep` sets ROTOR_FUZZ_RUNS (a multiplier of those counts) and a random seed
 * unless ROTOR_FUZZ_SEED replays one; the seed is printed so a failure can be replayed.
 */
import { Code } from '@connectrpc/connect';
import { expect } from 'vitest';
import type { TestServer } from '../support/server.js';

const FUZZ_SEED = 20261207;

function wholeNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a whole number, got "${raw}"`);
  return n;
}

const multiplier = wholeNumber('ROTOR_FUZZ_RUNS');
const seed = wholeNumber('ROTOR_FUZZ_SEED') ?? (multiplier ? Date.now() % 2 ** 31 : FUZZ_SEED);
if (multiplier)
  console.log(`fuzz: ROTOR_FUZZ_RUNS=${multiplier}× from seed ${seed} (ROTOR_FUZZ_SEED=${seed} replays it)`);

/** fast-check parameters for a property: `base` runs in CI, `base × ROTOR_FUZZ_RUNS` in test:deep. */
export function fuzzParams(base: number): { seed: number; numRuns: number } {
  return { seed, numRuns: base * (multiplier || 1) };
}

/** Row counts of the tables a call may write. */
export async function rowCounts(s: TestServer): Promise<{ tokens: number; events: number }> {
  const count = async (table: string) =>
    Number(((await s.rotor.store.knex(table).count({ n: '*' })) as { n: number | string }[])[0]?.n);
  return { tokens: await count('tokens'), events: await count('token_events') };
}

/** Fails when the server stopped answering /healthz. */
export async function expectServing(s: TestServer): Promise<void> {
  const r = await fetch(`${s.httpUrl}/healthz`);
  expect(r.status).toBe(200);
  await r.arrayBuffer();
}

/**
 * The codes src/api/connect-errors.ts maps domain errors to (gRPC status numbers and Connect wire
 * names share them); never `internal`, `unknown` or `unavailable` for bad input.
 */
export const DOCUMENTED_CODES = [
  Code.InvalidArgument,
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.FailedPrecondition,
  Code.NotFound,
  Code.ResourceExhausted,
  Code.OutOfRange,
];

/** DOCUMENTED_CODES as Connect wire names (`invalid_argument`, …). */
export const DOCUMENTED_CODE_NAMES = DOCUMENTED_CODES.map((c) =>
  Code[c].replace(/[A-Z]/g, (m, i: number) => (i === 0 ? m.toLowerCase() : `_${m.toLowerCase()}`)),
);
