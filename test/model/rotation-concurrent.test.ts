/**
 * The concurrent half of the model-based rotation test (docs/rotation.md, "Changes to one family
 * are serialised", "Wrong retry keys"): two application contexts on one PostgreSQL database play
 * two replicas (each its own pool, token cache off), as in test/app/family-race.test.ts.
 *
 * Each run builds a small family sequentially (a policy, up to two rotations with or without a key,
 * a clock move), then issues two or three commands on that family at once, alternating replicas,
 * each started after a random 0-7 ms: rotations of the head or of its predecessor (by secret or by
 * id, with a key of the pool or none), the same request twice (a client's retry racing its
 * original), RevokeToken, RevokeFamily, and a thief presenting the head or its predecessor without
 * a DPoP proof or with a proof of another key. A third of the families are DPoP-bound
 * (docs/dpop.md): the holder's rotations carry a proof of the family's key, and the thief's are
 * refused `invalid_dpop_proof` before any rule runs, changing nothing, however they interleave
 * with the holder's (in an unbound family the thief's request is an ordinary rotation by secret).
 * The model clock does not move while they run.
 *
 * Once all have settled, (a) some sequential order of them in the reference model
 * (rotation-model.ts) must give every answer (status, code, which successor, the secret of a
 * replay) and exactly the database's final state and event log (RealSystem.verify); (b) these hold
 * whatever the model says: at most one active token in the family, none in a revoked family, every
 * successor exists, at most one successor per token and exactly one when only rotations of an
 * active token contended, and a request raced by its own retry (same token, same key) is never
 * refused.
 *
 * `npm test` runs fixed seeds; `npm run test:deep` (with ROTOR_TEST_DATABASE_URL set) runs
 * ROTOR_DEEP_RUNS groups from a random seed (printed; ROTOR_MODEL_SEED replays it). With the family
 * lock turned into a no-op (`familyLockSql` returning `select 1`), the fixed seeds fail on
 * RevokeFamily ∥ rotate, on the predecessor presented again ∥ rotate, and on RevokeToken ∥ rotation
 * by id.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Caller } from '../../src/app/authenticate.js';
import { bootstrapAdmin } from '../../src/app/bootstrap.js';
import { loadConfig } from '../../src/runtime/config.js';
import { BRAKES_OFF } from '../support/brakes-off.js';
import { createApp, type RotorApp } from '../../src/runtime/create-app.js';
import { createLogger } from '../../src/runtime/logger.js';
import { describeOnPostgres, scratchDatabase, type ScratchDatabase } from '../support/engines.js';
import { type NamedBy, type RotationAnswer, RotationModel } from './rotation-model.js';
import { type Outcome, RealSystem, type TestClock } from './rotation-system.js';

/** The retry window of rotation-model.test.ts: between the reuse graces drawn (0, 2, 30 s). */
const RETRY_WINDOW_SECONDS = 4;
const SECRET = randomBytes(32).toString('hex');
/** The fixed seeds of `npm test`, each run for RUNS_PER_SEED groups. */
const SEEDS = [20261207, 7];
const RUNS_PER_SEED = 100;

type Target = 'head' | 'previous';
type Key = 'k0' | 'k1' | 'k2' | undefined;

type Command =
  | { kind: 'rotate'; target: Target; namedBy: NamedBy; key: Key }
  | { kind: 'thief'; target: Target; proof: 'none' | 'other' }
  | { kind: 'revokeToken'; target: Target }
  | { kind: 'revokeFamily' };

interface Setup {
  reuseGraceSeconds: number;
  overlapSeconds: number;
  rotations: { namedBy: NamedBy; key: Key }[];
  advanceMs: number;
  /** The family is bound to the holder's DPoP key. */
  dpop: boolean;
}

interface Group {
  commands: Command[];
  /** Before each command starts, in real milliseconds. */
  staggers: number[];
}

/** What one command answered: a rotation's or RevokeToken's outcome, RevokeFamily's count. */
type Actual = Outcome | { ok: true; count: number };

/** What the model answered for one command. */
type Expected =
  | RotationAnswer
  | { ok: false; code: 'invalid_dpop_proof' }
  | { ok: true; revoked: true }
  | { ok: true; count: number };

const show = (c: Command): string =>
  c.kind === 'rotate'
    ? `rotate(${c.target} ${c.namedBy === 'presented' ? 'by secret' : 'by id'}${c.key ? `, key ${c.key}` : ''})`
    : c.kind === 'thief'
      ? `thief(${c.target}, proof ${c.proof})`
      : c.kind === 'revokeToken'
        ? `revokeToken(${c.target})`
        : 'revokeFamily';

const key: fc.Arbitrary<Key> = fc.constantFrom<Key>(undefined, 'k0', 'k1', 'k2');
const target = fc.constantFrom<Target>('head', 'previous');
const rotation = fc
  .record({ target, namedBy: fc.constantFrom<NamedBy>('presented', 'presented', 'by_id'), key })
  .map((r): Command => ({ kind: 'rotate', ...r }));
const command = fc.oneof(
  { arbitrary: rotation, weight: 5 },
  { arbitrary: target.map((t): Command => ({ kind: 'revokeToken', target: t })), weight: 1 },
  { arbitrary: fc.constant<Command>({ kind: 'revokeFamily' }), weight: 1 },
  {
    arbitrary: fc
      .record({ target, proof: fc.constantFrom<'none' | 'other'>('none', 'other') })
      .map((r): Command => ({ kind: 'thief', ...r })),
    weight: 2,
  },
);
const commands = fc.oneof(
  { arbitrary: fc.array(command, { minLength: 2, maxLength: 3 }), weight: 4 },
  // A client's retry racing its original: the same request two or three times.
  { arbitrary: fc.tuple(rotation, fc.constantFrom(2, 3)).map(([c, n]) => Array<Command>(n).fill(c)), weight: 2 },
  // The races review found: the predecessor presented again (reuse after the grace) or
  // RevokeFamily, while the thief rotates the head.
  {
    arbitrary: fc.constant<Command[]>([
      { kind: 'rotate', target: 'previous', namedBy: 'presented', key: undefined },
      { kind: 'rotate', target: 'head', namedBy: 'presented', key: undefined },
    ]),
    weight: 1,
  },
  {
    arbitrary: fc.constant<Command[]>([
      { kind: 'revokeFamily' },
      { kind: 'rotate', target: 'head', namedBy: 'presented', key: undefined },
    ]),
    weight: 1,
  },
);
const group: fc.Arbitrary<Group> = commands.chain((cs) =>
  fc
    .array(fc.nat({ max: 7 }), { minLength: cs.length, maxLength: cs.length })
    .map((staggers) => ({ commands: cs, staggers })),
);
const setup: fc.Arbitrary<Setup> = fc.record({
  reuseGraceSeconds: fc.constantFrom(0, 2, 30),
  overlapSeconds: fc.constantFrom(0, 3),
  rotations: fc.array(fc.record({ namedBy: fc.constantFrom<NamedBy>('presented', 'by_id'), key }), {
    minLength: 0,
    maxLength: 2,
  }),
  // Inside every window, past the 2 s grace, past the race window (3 s), past the retry window (4 s).
  advanceMs: fc.constantFrom(0, 0, 1000, 2500, 3500, 5000),
  dpop: fc.constantFrom(false, false, true),
});

const deepRuns = Number(process.env.ROTOR_DEEP_RUNS ?? 0);
if (!Number.isSafeInteger(deepRuns) || deepRuns < 0) {
  throw new Error(`ROTOR_DEEP_RUNS must be a whole number of runs, got "${process.env.ROTOR_DEEP_RUNS}"`);
}
const deepSeed = process.env.ROTOR_MODEL_SEED
  ? Number(process.env.ROTOR_MODEL_SEED)
  : Date.now() ^ (Math.random() * 2 ** 31);
const runs: { seed: number; numRuns: number }[] =
  deepRuns > 0 ? [{ seed: deepSeed, numRuns: deepRuns }] : SEEDS.map((seed) => ({ seed, numRuns: RUNS_PER_SEED }));
if (deepRuns > 0)
  console.log(`concurrent rotation model: ${deepRuns} groups from seed ${deepSeed} (ROTOR_MODEL_SEED replays them)`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cloneModel(m: RotationModel): RotationModel {
  const c = new RotationModel(m.now, m.retryWindowSeconds);
  c.tokens.push(...structuredClone(m.tokens));
  c.families.push(...structuredClone(m.families));
  c.events.push(...structuredClone(m.events));
  return c;
}

/** Model token a command names, resolved once before the group starts (the family's only tokens). */
function resolve(m: RotationModel, t: Target): number {
  const head = m.tokens.length - 1;
  return t === 'head' ? head : Math.max(0, head - 1);
}

function keyName(k: Key): string | undefined {
  return k === undefined ? undefined : `0:${k}`;
}

async function runReal(r: RealSystem, c: Command, token: number): Promise<Actual> {
  if (c.kind === 'rotate') return r.rotate(token, c.namedBy, keyName(c.key));
  if (c.kind === 'thief') return r.rotate(token, 'presented', undefined, c.proof);
  if (c.kind === 'revokeToken') return r.revokeToken(token);
  return { ok: true, count: await r.revokeFamily(0) };
}

function runModel(m: RotationModel, c: Command, token: number): Expected {
  if (c.kind === 'rotate') return m.rotate(token, c.namedBy, keyName(c.key));
  // docs/dpop.md "Proof first": nothing is decided, nothing changes; unbound, an ordinary rotation.
  if (c.kind === 'thief')
    return bound(m, token) ? { ok: false, code: 'invalid_dpop_proof' } : m.rotate(token, 'presented', undefined);
  if (c.kind === 'revokeToken') {
    m.revokeToken(token);
    return { ok: true, revoked: true };
  }
  return { ok: true, count: m.revokeFamily(0) };
}

function bound(m: RotationModel, token: number): boolean {
  return m.policyOf(token).dpop === true;
}

function kindOf(a: Expected): string {
  if (!a.ok) return a.code === 'reuse_detected' ? `reuse_detected (${a.cause})` : a.code;
  if ('replayed' in a) return a.replayed ? 'replayed' : 'rotated';
  return 'count' in a ? 'family revoked' : 'token revoked';
}

/**
 * Whether running the group in `order` in a copy of the model explains every answer and the
 * database: undefined when it does, else what differs.
 */
async function explains(
  base: RealSystem,
  model: RotationModel,
  group: Command[],
  tokens: number[],
  actual: Actual[],
  order: number[],
): Promise<{ why?: string; answers: string[] }> {
  const m = cloneModel(model);
  const minted = new Map<number, { id: string; secret: string }>();
  const idOf = (i: number) => (i < base.ids.length ? base.id(i) : minted.get(i)?.id);
  const secretOf = (i: number) => (i < base.secrets.length ? base.secret(i) : minted.get(i)?.secret);
  const answers: string[] = [];
  for (const k of order) {
    const c = group[k]!;
    const expected = runModel(m, c, tokens[k]!);
    const got = actual[k]!;
    answers.push(`${show(c)}${bound(m, tokens[k]!) ? ' [DPoP-bound]' : ''} → ${kindOf(expected)}`);
    const what = `${show(c)} (#${k}): model ${JSON.stringify(expected)}, service ${JSON.stringify(got)}`;
    if ('count' in expected) {
      if (!('count' in got) || got.count !== expected.count) return { why: what, answers };
    } else if ('revoked' in expected) {
      if (!got.ok || 'count' in got || got.id !== base.id(tokens[k]!)) return { why: what, answers };
    } else if (expected.ok) {
      if (!got.ok || 'count' in got) return { why: what, answers };
      if (expected.replayed) {
        if (got.id !== idOf(expected.token) || got.secret !== secretOf(expected.token)) return { why: what, answers };
      } else {
        if (got.previousId !== base.id(tokens[k]!) || [...minted.values()].some((t) => t.id === got.id))
          return { why: what, answers };
        minted.set(expected.token, { id: got.id, secret: got.secret });
      }
    } else {
      if (got.ok) return { why: what, answers };
      if (got.code !== expected.code) return { why: what, answers };
      if (expected.code === 'already_rotated' && got.successorId !== idOf(expected.successor))
        return { why: what, answers };
      if (
        expected.code === 'reuse_detected' &&
        got.message.startsWith('too many wrong idempotency keys') !== (expected.cause === 'wrong_retry_keys')
      )
        return { why: what, answers };
    }
  }
  // Every token the model minted was matched to a successor the service answered.
  const r = base.view(base.app, true);
  for (let i = r.ids.length; i < m.tokens.length; i++) {
    const t = minted.get(i);
    if (t === undefined) return { why: `model token #${i} matched to no answer`, answers };
    r.adopt(t.id, t.secret);
  }
  try {
    await r.verify(m);
  } catch (e) {
    return { why: `final state: ${(e as Error).message}`, answers };
  }
  return { answers };
}

function permutations(n: number): number[][] {
  if (n === 1) return [[0]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, at) => [...p.slice(0, at), n - 1, ...p.slice(at)]),
  );
}

interface Row {
  id: string;
  family_id: string;
  previous_id: string | null;
  successor_id: string | null;
  expires_at: number | string;
  revoked_at: number | string | null;
  revoke_reason: string | null;
}

/** (b): what must hold after any concurrent group, whatever the model says. */
async function invariants(
  r: RealSystem,
  model: RotationModel,
  group: Command[],
  tokens: number[],
  actual: Actual[],
): Promise<string[]> {
  const problems: string[] = [];
  const now = r.clock.t;
  const rows: Row[] = await r.app.store.knex('tokens').where('family_id', r.familyId(0)).select('*');
  const active = rows.filter((t) => t.revoked_at === null && now < Number(t.expires_at));
  if (active.length > 1) problems.push(`${active.length} active tokens in the family`);
  if (rows.some((t) => t.revoke_reason === 'family_revoked' || t.revoke_reason === 'reuse_detected') && active.length)
    problems.push(`revoked family with active ${active.map((t) => t.id).join(', ')}`);
  const ids = new Set(rows.map((t) => t.id));
  for (const t of rows) {
    if (t.successor_id !== null && !ids.has(t.successor_id)) problems.push(`successor of ${t.id} missing`);
    const successors = rows.filter((s) => s.previous_id === t.id);
    if (successors.length > 1) problems.push(`${t.id} has ${successors.length} successors`);
  }
  // Only rotations of one token that was active: exactly one of them wins.
  const contested = tokens[0]!;
  if (group.every((c, k) => c.kind === 'rotate' && tokens[k] === contested) && model.state(contested) === 'active') {
    const won = rows.filter((s) => s.previous_id === r.id(contested));
    if (won.length !== 1) problems.push(`contested rotation of an active token: ${won.length} winners`);
  }
  // A request raced by its own retry (same token, same key) is answered the same successor, and
  // never refused, when the token was active or its rotation with that key is still replayable.
  const first = group[0]!;
  if (
    first.kind === 'rotate' &&
    first.key !== undefined &&
    group.every((c, k) => JSON.stringify(c) === JSON.stringify(first) && tokens[k] === contested)
  ) {
    const t = model.tokens[contested]!;
    const replayable =
      model.state(contested) === 'active' ||
      (model.state(contested) === 'rotated' &&
        t.rotation?.key === keyName(first.key) &&
        t.rotation?.namedBy === first.namedBy &&
        model.state(t.successor!) === 'active' &&
        model.now < t.revokedAt! + RETRY_WINDOW_SECONDS * 1000);
    if (replayable) {
      const refused = actual.filter((a) => !a.ok);
      if (refused.length > 0) problems.push(`a retry with the right key refused: ${JSON.stringify(refused)}`);
      const named = new Set(actual.map((a) => (a.ok && 'id' in a ? a.id : undefined)));
      if (named.size !== 1) problems.push(`retries with one key answered ${named.size} successors`);
    }
  }
  return problems;
}

describeOnPostgres('concurrent rotation commands on two replicas agree with docs/rotation.md on postgres', () => {
  let db: ScratchDatabase;
  let a: RotorApp;
  let b: RotorApp;
  let admin: Caller;
  const clock: TestClock = { t: Date.UTC(2031, 0, 1) };
  const seen = new Map<string, number>();

  async function replica(url: string): Promise<RotorApp> {
    const config = loadConfig({
      ...BRAKES_OFF,
      ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-model-concurrent-')),
      ROTOR_DATABASE_URL: url,
      ROTOR_SECRET: SECRET,
      ROTOR_RETRY_WINDOW_SECONDS: String(RETRY_WINDOW_SECONDS),
      ROTOR_TOKEN_CACHE_TTL_MS: '0',
    });
    return createApp(
      config,
      createLogger('error', () => undefined),
      { now: () => clock.t },
    );
  }

  beforeAll(async () => {
    db = await scratchDatabase();
    a = await replica(db.url);
    b = await replica(db.url);
    admin = {
      token: (await bootstrapAdmin(a, { ownerId: 'model-admin', lifetimeSeconds: 365 * 24 * 3600 })).record,
      peer: null,
    };
  });
  afterAll(async () => {
    await a?.store.close();
    await b?.store.close();
    await db?.drop();
  });

  /** One run: the family built sequentially, then the group at once; fails with what no order explains. */
  async function run(s: Setup, g: Group): Promise<void> {
    clock.t += 3_600_000;
    const model = new RotationModel(clock.t, RETRY_WINDOW_SECONDS);
    const real = new RealSystem(a, admin, clock, 'postgres', await RealSystem.lastSequence(a));
    const policy = {
      reuseGraceSeconds: s.reuseGraceSeconds,
      overlapSeconds: s.overlapSeconds,
      ...(s.dpop && { dpop: true }),
    };
    const created = await real.create(policy, 3_600_000);
    if (!created.ok) throw new Error(`CreateToken failed: ${created.code}`);
    model.create(policy, 3_600_000);
    real.familyIds.push(created.familyId);
    real.adopt(created.id, created.secret);
    for (const step of s.rotations) {
      const head = model.tokens.length - 1;
      const got = await real.rotate(head, step.namedBy, keyName(step.key));
      const want = model.rotate(head, step.namedBy, keyName(step.key));
      if (!got.ok || !want.ok) throw new Error(`setup rotation failed: ${JSON.stringify(got)}`);
      real.adopt(got.id, got.secret);
    }
    model.advance(s.advanceMs);
    clock.t += s.advanceMs;
    await real.verify(model);

    const tokens = g.commands.map((c) => (c.kind === 'revokeFamily' ? 0 : resolve(model, c.target)));
    const replicas = [real, real.view(b)];
    const settled = await Promise.allSettled(
      g.commands.map((c, k) => sleep(g.staggers[k]!).then(() => runReal(replicas[k % 2]!, c, tokens[k]!))),
    );
    const actual = settled.map((p) => {
      if (p.status === 'rejected') throw p.reason;
      return p.value;
    });

    const problems = await invariants(real, model, g.commands, tokens, actual);
    const tried: string[] = [];
    let explained: string[] | undefined;
    for (const order of permutations(g.commands.length)) {
      const { why, answers } = await explains(real, model, g.commands, tokens, actual, order);
      if (why === undefined) {
        explained = answers;
        break;
      }
      tried.push(`order ${order.join(',')}: ${why}`);
    }
    if (explained === undefined) problems.push(`no sequential order explains the run:\n  ${tried.join('\n  ')}`);
    else for (const answer of explained) seen.set(answer, (seen.get(answer) ?? 0) + 1);
    expect(problems, `setup ${JSON.stringify(s)}; group ${g.commands.map(show).join(' ∥ ')}`).toEqual([]);
  }

  it.each(runs)(
    'seed $seed: $numRuns concurrent groups have a sequential explanation on postgres',
    async ({ seed, numRuns }) => {
      const started = Date.now();
      await fc.assert(
        fc.asyncProperty(setup, group, (s, g) => run(s, g)),
        { seed, numRuns },
      );
      console.log(`concurrent rotation model, seed ${seed}: ${numRuns} groups in ${Date.now() - started} ms`);
    },
    deepRuns > 0 ? 24 * 3_600_000 : 60_000,
  );

  it('the groups reached the contested answers on postgres', () => {
    console.log('concurrent rotation model coverage:', Object.fromEntries([...seen].sort()));
    const kinds = new Set([...seen.keys()].map((s) => s.slice(s.indexOf('→') + 2)));
    const wanted = [
      'rotated',
      'replayed',
      'already_rotated',
      'reuse_detected (presented_again)',
      'token_revoked',
      'invalid_dpop_proof',
    ];
    expect(wanted.filter((k) => !kinds.has(k))).toEqual([]);
    // The holder of a bound family rotated, and reuse was detected in one, inside the groups.
    const boundKinds = new Set(
      [...seen.keys()].filter((s) => s.includes('[DPoP-bound]')).map((s) => s.slice(s.indexOf('→') + 2)),
    );
    expect(
      ['rotated', 'reuse_detected (presented_again)', 'invalid_dpop_proof'].filter((k) => !boundKinds.has(k)),
    ).toEqual([]);
  });
});
