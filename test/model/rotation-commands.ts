/**
 * The commands of the model-based rotation test: each applies one call to the reference model
 * (rotation-model.ts) and to the application (rotation-system.ts), compares the answers, then
 * checks the invariants against the database.
 *
 * A command names a token by how far back it was minted (`token ~0` is the newest, `~1` the one
 * before, modulo the number of tokens), and a family likewise, so that shrunk sequences read well
 * and stay meaningful when earlier commands are dropped. Idempotency keys come from a pool of
 * three per family (`key 0`..`key 2`), so retries with the same key, and with a wrong one, are
 * frequent.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import {
  RETRY_RACE_WINDOW_MS,
  type CascadeAnswer,
  type ModelPolicy,
  type RevokeOptions,
  type NamedBy,
  type RotationAnswer,
  type RotationModel,
} from './rotation-model.js';
import type { Outcome, RealSystem } from './rotation-system.js';

type ModelCommand = fc.AsyncCommand<RotationModel, RealSystem>;

/** Token `back` counted from the newest; undefined when there is none. */
function pick(count: number, back: number): number | undefined {
  return count === 0 ? undefined : count - 1 - (back % count);
}

function tokenOf(m: RotationModel, back: number): number {
  const i = pick(m.tokens.length, back);
  if (i === undefined) throw new Error('no token to pick');
  return i;
}

class Create implements ModelCommand {
  constructor(
    readonly policy: ModelPolicy,
    readonly lifetimeMs: number,
  ) {}
  check = (m: Readonly<RotationModel>) => m.families.length < 6;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const answer = await r.create(this.policy, this.lifetimeMs);
    if (!answer.ok) throw new Error(`CreateToken failed: ${answer.code} ${answer.message}`);
    const i = m.create(this.policy, this.lifetimeMs);
    r.familyIds.push(answer.familyId);
    r.adopt(answer.id, answer.secret);
    expect(r.familyIds.length - 1).toBe(m.tokens[i]!.family);
    await r.verify(m);
  }
  toString = () =>
    `create(grace ${this.policy.reuseGraceSeconds}s, overlap ${this.policy.overlapSeconds}s${this.policy.retireOnFirstUse ? ', retire on first use' : ''}, lifetime ${this.lifetimeMs}ms${this.policy.dpop ? ', DPoP-bound' : ''})`;
}

/**
 * docs/rotation.md "Lineage and cascade": CreateToken with a model token as the bearer (the owner
 * id is the bearer's, scopes and policy its own: "Who may do what" asks for nothing more). The new
 * family's parent is the bearer. Bearers are drawn from unbound families (a bound bearer would
 * need a DPoP proof of the call).
 */
class CreateChild implements ModelCommand {
  constructor(
    readonly back: number,
    readonly lifetimeMs: number,
    /** Draw the bearer among the tokens that authenticate (else among all, refusals included). */
    readonly usableOnly: boolean,
  ) {}
  private bearers(m: Readonly<RotationModel>): number[] {
    return m.tokens.flatMap((t, i) =>
      m.families[t.family]!.policy.dpop === true || (this.usableOnly && !m.usable(i)) ? [] : [i],
    );
  }
  check = (m: Readonly<RotationModel>) => m.families.length < 9 && this.bearers(m).length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const bearers = this.bearers(m);
    const bearer = bearers[bearers.length - 1 - (this.back % bearers.length)]!;
    const actual = await r.createChild(bearer, this.lifetimeMs);
    const logged = m.events.length;
    const expected = m.createChild(bearer, this.lifetimeMs);
    if (m.events.filter((e, k) => k >= logged && e.type === 'predecessor_retired').length > 0)
      r.note('first use retired the predecessor');
    const lineage = m.cascadedAncestor(bearer) !== undefined;
    r.note(`createChild: ${expected.ok ? 'created' : expected.code}${lineage ? ' (ancestor cascaded)' : ''}`);
    const what = `${this} with model token #${bearer} as bearer`;
    if (!expected.ok) {
      expect(actual.ok ? { ok: true } : { ok: false, code: actual.code }, what).toEqual(expected);
      // "Errors": revoked by a cascade, the bearer is told so (a token revoked before for a reason
      // of its own, e.g. reuse detected in its family, keeps that reason's message).
      if (m.tokens[bearer]!.revokeReason === 'cascade')
        expect((actual as Extract<Outcome, { ok: false }>).message, `${what}: message`).toContain(
          'an ancestor was revoked with cascade',
        );
    } else {
      expect(actual, what).toMatchObject({ ok: true, parentId: r.id(bearer) });
      const minted = actual as Extract<Outcome, { ok: true }>;
      r.familyIds.push(minted.familyId);
      r.adopt(minted.id, minted.secret);
      expect(r.familyIds.length - 1, what).toBe(m.tokens[expected.token]!.family);
    }
    await r.verify(m);
  }
  toString = () =>
    `createChild(bearer ~${this.back} of the ${this.usableOnly ? 'usable tokens' : 'tokens'} of unbound families, lifetime ${this.lifetimeMs}ms)`;
}

/** Compares a cascade's answer (counts, and on a dry run the listed ids) with the model's. */
function expectCascade(
  r: RealSystem,
  what: string,
  actual: { cascadeCount: number; dryRunIds: string[]; truncated: boolean },
  expected: CascadeAnswer,
): void {
  const selfIds = expected.self.map((i) => r.id(i));
  const descendantIds = expected.descendants.map((i) => r.id(i));
  const sorted = (ids: string[]) => [...ids].sort();
  expect(
    {
      cascadeCount: actual.cascadeCount,
      self: sorted(actual.dryRunIds.slice(0, selfIds.length)),
      descendants: sorted(actual.dryRunIds.slice(selfIds.length)),
      truncated: actual.truncated,
    },
    `${what}: the cascade's answer`,
  ).toEqual({
    cascadeCount: expected.cascadeCount,
    self: sorted(selfIds),
    descendants: sorted(descendantIds),
    truncated: false,
  });
}

function optionsText(o: RevokeOptions): string {
  return `${o.cascade ? ', cascade' : ''}${o.dryRun ? ', dry run' : ''}`;
}

/** Notes what a revocation with cascade or dry run reached. */
function noteCascade(r: RealSystem, o: RevokeOptions, expected: CascadeAnswer): void {
  if (!o.cascade && !o.dryRun) return;
  r.note(`${o.dryRun ? 'dry run' : 'cascade'}: ${expected.cascadeCount > 0 ? 'descendants' : 'no descendants'}`);
}

/**
 * docs/dpop.md, "Proof first": a thief presents a token of a DPoP-bound family (any state) without
 * a proof, or with a proof by another key. Refused as `invalid_dpop_proof`, and nothing changes:
 * no reuse is detected, no event is written.
 */
class ThiefRotate implements ModelCommand {
  constructor(
    readonly back: number,
    readonly proof: 'none' | 'other',
  ) {}
  private bound(m: Readonly<RotationModel>): number[] {
    return m.tokens.flatMap((t, i) => (m.families[t.family]!.policy.dpop === true ? [i] : []));
  }
  check = (m: Readonly<RotationModel>) => this.bound(m).length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const bound = this.bound(m);
    const i = bound[bound.length - 1 - (this.back % bound.length)]!;
    const actual = await r.rotate(i, 'presented', undefined, this.proof);
    r.note(`thief (${this.proof}): invalid_dpop_proof`);
    expect(actual.ok ? { ok: true } : { ok: false, code: actual.code }, `${this} on model token #${i}`).toEqual({
      ok: false,
      code: 'invalid_dpop_proof',
    });
    await r.verify(m);
  }
  toString = () => `thiefRotate(token ~${this.back} of a bound family, proof ${this.proof})`;
}

class Rotate implements ModelCommand {
  constructor(
    readonly back: number,
    readonly namedBy: NamedBy,
    /** A key of the family's pool; `fresh`: a new key on every try (a guesser); undefined: none. */
    readonly key: number | 'fresh' | undefined,
    /** The same request sent this many times in a row (a retry loop; a guesser's burst). */
    readonly times: number,
  ) {}
  check = (m: Readonly<RotationModel>) => m.tokens.length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = tokenOf(m, this.back);
    const start = m.events.length;
    for (let n = 0; n < this.times; n++) {
      const family = m.tokens[i]!.family;
      const fresh = `${family}:fresh:${start}:${n}`;
      await this.once(
        m,
        r,
        i,
        this.key === undefined ? undefined : this.key === 'fresh' ? fresh : `${family}:${this.key}`,
      );
    }
    await r.verify(m);
  }
  private async once(m: RotationModel, r: RealSystem, i: number, keyName: string | undefined): Promise<void> {
    const actual = await r.rotate(i, this.namedBy, keyName);
    const logged = m.events.length;
    const racedBefore = m.tokens[i]!.refused.racing > 0;
    const expected = m.rotate(i, this.namedBy, keyName);
    r.note(`rotate ${this.namedBy}: ${answerKind(expected)}`);
    if (!expected.ok && expected.code === 'reuse_detected' && expected.cause === 'wrong_retry_keys' && racedBefore) {
      r.note('reuse for late wrong keys after racing ones');
    }
    if (m.events.slice(logged).some((e) => e.reason === 'cascade')) r.note('reuse cascaded to descendants');
    for (const e of m.events.slice(logged)) if (e.type === 'retry_refused') r.note(`retry_refused ${e.reason}`);
    const what = `${this} on model token #${i}`;
    if (expected.ok) {
      expect(actual, what).toMatchObject({ ok: true });
      const minted = actual as Extract<Outcome, { ok: true }>;
      if (expected.replayed) {
        expect({ id: minted.id, sameSecret: minted.secret === r.secret(expected.token) }, `${what}: replay`).toEqual({
          id: r.id(expected.token),
          sameSecret: true,
        });
      } else {
        expect({ family: minted.familyId, previous: minted.previousId }, `${what}: successor`).toEqual({
          family: r.familyId(m.tokens[i]!.family),
          previous: r.id(i),
        });
        r.adopt(minted.id, minted.secret);
      }
    } else {
      const refused = actual.ok ? { ok: true, code: undefined } : { ok: false, code: actual.code };
      expect(refused, what).toEqual({ ok: false, code: expected.code });
      const error = actual as Extract<Outcome, { ok: false }>;
      if (expected.code === 'already_rotated') {
        expect(error.successorId, `${what}: the successor named`).toBe(r.id(expected.successor));
      }
      if (expected.code === 'reuse_detected') {
        expect(error.message.startsWith('too many wrong idempotency keys'), `${what}: ${error.message}`).toBe(
          expected.cause === 'wrong_retry_keys',
        );
      }
    }
  }
  toString = () =>
    `rotate(token ~${this.back} ${this.namedBy === 'presented' ? 'by secret' : 'by id'}${this.key === undefined ? '' : `, key ${this.key}`}${this.times === 1 ? '' : `, ${this.times} times`})`;
}

const PLAIN: RevokeOptions = { cascade: false, dryRun: false };

/** Tokens that created a family (where a cascade has something to do). */
function parents(m: Readonly<RotationModel>): number[] {
  return [...new Set(m.families.flatMap((f) => (f.parent === null ? [] : [f.parent])))].sort((a, b) => a - b);
}

/** With `parentsOnly`, token `back` among the parents (when there are any); else among all tokens. */
function revokeTarget(m: Readonly<RotationModel>, back: number, parentsOnly: boolean): number {
  const among = parentsOnly ? parents(m) : [];
  if (among.length === 0) return tokenOf(m as RotationModel, back);
  return among[among.length - 1 - (back % among.length)]!;
}

class RevokeToken implements ModelCommand {
  constructor(
    readonly back: number,
    readonly options: RevokeOptions = PLAIN,
    /** Name a token that created a family, when there is one. */
    readonly parentsOnly = false,
  ) {}
  check = (m: Readonly<RotationModel>) => m.tokens.length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = revokeTarget(m, this.back, this.parentsOnly);
    const actual = await r.revokeTokenWith(i, this.options);
    const logged = m.events.length;
    const expected = m.revokeToken(i, this.options);
    if (!this.options.dryRun) r.note(`revokeToken: ${m.events[logged]?.reason ?? 'no change'}`);
    noteCascade(r, this.options, expected);
    expect(actual.id, `${this} on #${i}`).toBe(r.id(i));
    expectCascade(r, `${this} on #${i}`, actual, expected);
    await r.verify(m);
  }
  toString = () => `revokeToken(${this.parentsOnly ? 'parent' : 'token'} ~${this.back}${optionsText(this.options)})`;
}

/**
 * docs/rotation.md "Lineage and cascade": RevokeToken with cascade cut off after its first
 * transaction (every batch fails). The descendants keep their own state, yet none authenticates
 * ("A descendant never authenticates again, even while batches are still running"); the
 * invariants of `verify` present each of them.
 */
class InterruptedCascade implements ModelCommand {
  constructor(readonly back: number) {}
  check = (m: Readonly<RotationModel>) => parents(m).length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = revokeTarget(m, this.back, true);
    const actual = await r.revokeTokenInterrupted(i);
    const before = m.tokens.map((_, k) => m.usable(k));
    m.revokeTokenInterrupted(i);
    const cut = m.tokens.filter((_, k) => before[k] && m.cascadedAncestor(k) !== undefined).length;
    r.note(`interrupted cascade: ${cut > 0 ? 'descendants refused' : 'nothing usable below'}`);
    // The first batch fails whenever there is a child family (the model's parents all have one).
    expect(actual, `${this} on #${i}`).toBe('interrupted');
    await r.verify(m);
  }
  toString = () => `interruptedCascade(parent ~${this.back})`;
}

class RevokeFamily implements ModelCommand {
  constructor(
    readonly back: number,
    readonly options: RevokeOptions = PLAIN,
    /** Name the family of a token that created a family, when there is one. */
    readonly parentsOnly = false,
  ) {}
  check = (m: Readonly<RotationModel>) => m.families.length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const f = this.parentsOnly
      ? m.tokens[revokeTarget(m, this.back, true)]!.family
      : pick(m.families.length, this.back)!;
    const actual = await r.revokeFamilyWith(f, this.options);
    const expected = m.revokeFamilyWith(f, this.options);
    noteCascade(r, this.options, expected);
    expect(actual.revokedCount, `${this}: revoked_count`).toBe(expected.revokedCount);
    expectCascade(r, `${this} on family #${f}`, actual, expected);
    await r.verify(m);
  }
  toString = () =>
    `revokeFamily(${this.parentsOnly ? "a parent's family" : 'family'} ~${this.back}${optionsText(this.options)})`;
}

class Authenticate implements ModelCommand {
  constructor(readonly back: number) {}
  check = (m: Readonly<RotationModel>) => m.tokens.length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = tokenOf(m, this.back);
    const actual = await r.authenticate(i);
    const logged = m.events.length;
    const expected = m.authenticate(i);
    if (m.events.length > logged) r.note('first use retired the predecessor');
    r.note(`authenticate: ${expected.ok ? 'ok' : expected.code}${m.state(i) === 'rotated' ? ' (rotated)' : ''}`);
    expect(actual.ok ? { ok: true } : { ok: false, code: actual.code }, `${this} on #${i}`).toEqual(expected);
    await r.verify(m);
  }
  toString = () => `authenticate(token ~${this.back})`;
}

class Introspect implements ModelCommand {
  constructor(readonly back: number) {}
  check = (m: Readonly<RotationModel>) => m.tokens.length > 0;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = tokenOf(m, this.back);
    const logged = m.events.length;
    const active = m.introspect(i);
    if (m.events.length > logged) r.note('first use retired the predecessor');
    r.note(`introspect: ${active ? 'active' : 'inactive'}${m.state(i) === 'rotated' ? ' (rotated)' : ''}`);
    expect(await r.introspect(i), `${this} on #${i}: active`).toBe(active);
    await r.verify(m);
  }
  toString = () => `introspect(token ~${this.back})`;
}

class Advance implements ModelCommand {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    m.advance(this.ms);
    r.clock.t += this.ms;
    await r.verify(m);
  }
  toString = () => `advance(${this.ms}ms)`;
}

/** One pass of the expiry scheduler: EXPIRING_SOON and EXPIRED events (docs/watch-expiry.md). */
class Tick implements ModelCommand {
  check = () => true;
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const start = m.events.length;
    m.tick();
    await r.tick();
    const kinds = new Set(m.events.slice(start).map((e) => e.type));
    if (kinds.size === 0) r.note('tick: nothing due');
    for (const k of kinds) r.note(`tick: ${k}`);
    await r.verify(m);
  }
  toString = () => 'tick';
}

/**
 * A guesser ("Wrong retry keys"): presents a rotated token `racing` times with a new key each
 * while inside the race window, moves the clock 1 ms past the race window when it is not there
 * yet, then presents it `times` times more, each with a new key.
 */
class LateGuesses implements ModelCommand {
  constructor(
    readonly back: number,
    readonly racing: number,
    readonly times: number,
  ) {}
  check = (m: Readonly<RotationModel>) => {
    const i = pick(m.tokens.length, this.back);
    return i !== undefined && m.tokens[i]!.revokeReason === 'rotated';
  };
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const i = tokenOf(m, this.back);
    const lateFrom = m.tokens[i]!.revokedAt! + RETRY_RACE_WINDOW_MS + 1;
    if (this.racing > 0 && lateFrom > m.now) await new Rotate(this.back, 'presented', 'fresh', this.racing).run(m, r);
    if (lateFrom > m.now) await new Advance(lateFrom - m.now).run(m, r);
    await new Rotate(this.back, 'presented', 'fresh', this.times).run(m, r);
  }
  toString = () => `guesses(token ~${this.back}, ${this.racing} racing then ${this.times} late fresh keys)`;
}

/**
 * The instants where the rules change their answer for one token; `soon` and `soonest`: where
 * its longest and its shortest expiry threshold fall due.
 */
type Edge = 'grace' | 'retry' | 'race' | 'overlap' | 'expiry' | 'soon' | 'soonest';

/**
 * Moves the clock to just before, at, or just after one of a token's window ends (when that is
 * ahead), then, with `probe`, presents the token there (the rotation `probe` describes).
 */
class AdvanceToEdge implements ModelCommand {
  constructor(
    readonly back: number,
    readonly edge: Edge,
    readonly offset: -1 | 0 | 1,
    readonly probe?: Rotate | Tick,
  ) {}
  check = (m: Readonly<RotationModel>) => {
    const target = this.target(m);
    return target !== undefined && target > m.now;
  };
  async run(m: RotationModel, r: RealSystem): Promise<void> {
    const ms = this.target(m)! - m.now;
    m.advance(ms);
    r.clock.t += ms;
    await r.verify(m);
    await this.probe?.run(m, r);
  }
  private target(m: Readonly<RotationModel>): number | undefined {
    const i = pick(m.tokens.length, this.back);
    if (i === undefined) return undefined;
    const t = m.tokens[i]!;
    if (this.edge === 'expiry') return t.expiresAt + this.offset;
    if (this.edge === 'soon' || this.edge === 'soonest') {
      const thresholds = m.thresholdsSeconds;
      if (thresholds.length === 0) return undefined;
      const seconds = this.edge === 'soon' ? Math.max(...thresholds) : Math.min(...thresholds);
      return t.expiresAt - seconds * 1000 + this.offset;
    }
    if (t.revokeReason !== 'rotated' || t.revokedAt === null) return undefined;
    const policy = m.families[t.family]!.policy;
    const length = {
      grace: policy.reuseGraceSeconds * 1000,
      retry: m.retryWindowSeconds * 1000,
      race: RETRY_RACE_WINDOW_MS,
      overlap: policy.overlapSeconds * 1000,
    }[this.edge];
    return t.revokedAt + length + this.offset;
  }
  toString = () =>
    `advanceTo(token ~${this.back} ${this.edge} end ${this.offset >= 0 ? '+' : ''}${this.offset}ms)${this.probe ? ` then ${this.probe}` : ''}`;
}

function answerKind(a: RotationAnswer): string {
  if (a.ok) return a.replayed ? 'replayed' : 'rotated';
  return a.code === 'reuse_detected' ? `reuse_detected (${a.cause})` : a.code;
}

/** Mostly the newest two tokens (the active head and its predecessor), sometimes older ones. */
const back = fc.oneof({ arbitrary: fc.nat({ max: 1 }), weight: 2 }, { arbitrary: fc.nat({ max: 5 }), weight: 1 });
const key = fc.option(
  fc.oneof(
    { arbitrary: fc.nat({ max: 2 }) as fc.Arbitrary<number | 'fresh'>, weight: 3 },
    { arbitrary: fc.constant<'fresh'>('fresh'), weight: 1 },
  ),
  { nil: undefined, freq: 4 },
);

/**
 * The command arbitraries, rotations weighted up. Policies: reuse grace 0, 2, 8 or 30 s (the retry
 * window of the test app lies between), overlap 0 or 3 s, lifetimes short enough to expire.
 */
export function commandArbitraries(): fc.Arbitrary<ModelCommand>[] {
  const create = fc
    .record({
      reuseGraceSeconds: fc.constantFrom(0, 2, 8, 30),
      overlapSeconds: fc.constantFrom(0, 3),
      retireOnFirstUse: fc.boolean(),
      lifetimeMs: fc.constantFrom(6_000, 60_000, 3_600_000),
      dpop: fc.constantFrom(false, false, true),
    })
    .map(
      ({ lifetimeMs, retireOnFirstUse, ...policy }): ModelCommand =>
        // docs/rotation.md "Retire on first use": only with overlap_seconds > 0.
        new Create(
          retireOnFirstUse && policy.overlapSeconds > 0 ? { ...policy, retireOnFirstUse } : policy,
          lifetimeMs,
        ),
    );
  const times = fc.constantFrom(1, 1, 1, 2, 3, 7);
  const bySecret = fc.tuple(back, key, times).map(([b, k, n]): ModelCommand => new Rotate(b, 'presented', k, n));
  const byId = fc.tuple(back, key, times).map(([b, k, n]): ModelCommand => new Rotate(b, 'by_id', k, n));
  const advance = fc
    .constantFrom(1, 999, 1000, 2000, 3000, 3001, 4000, 5000, 60_000)
    .map((ms): ModelCommand => new Advance(ms));
  const edge = fc
    .tuple(
      back,
      fc.constantFrom<Edge>('grace', 'retry', 'race', 'overlap', 'expiry'),
      fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
    )
    .map(([b, e, o]): ModelCommand => new AdvanceToEdge(b, e, o));
  const probe = fc
    .tuple(
      back,
      fc.constantFrom<Edge>('grace', 'retry', 'race', 'overlap', 'expiry'),
      fc.constantFrom<-1 | 0 | 1>(-1, 0, 1),
      key,
    )
    .map(([b, e, o, k]): ModelCommand => new AdvanceToEdge(b, e, o, new Rotate(b, 'presented', k, 1)));
  // The scheduler's pass, alone or right at a threshold or expiry instant of a token.
  const tick = fc.oneof(
    fc.constant<ModelCommand>(new Tick()),
    fc
      .tuple(back, fc.constantFrom<Edge>('soon', 'soonest', 'expiry'), fc.constantFrom<-1 | 0 | 1>(-1, 0, 1))
      .map(([b, e, o]): ModelCommand => new AdvanceToEdge(b, e, o, new Tick())),
  );
  const childOf = fc
    .tuple(back, fc.constantFrom(6_000, 60_000, 3_600_000), fc.constantFrom(true, true, true, false))
    .map(([b, l, u]): ModelCommand => new CreateChild(b, l, u));
  const options = fc.constantFrom<RevokeOptions>(
    { cascade: true, dryRun: false },
    { cascade: true, dryRun: true },
    { cascade: false, dryRun: true },
  );
  const guesses = fc
    .tuple(back, fc.constantFrom(0, 2), fc.constantFrom(1, 6))
    .map(([b, racing, late]): ModelCommand => new LateGuesses(b, racing, late));
  return [
    create,
    create,
    bySecret,
    bySecret,
    bySecret,
    bySecret,
    byId,
    byId,
    back.map((b): ModelCommand => new RevokeToken(b)),
    back.map((b): ModelCommand => new RevokeFamily(b)),
    // docs/rotation.md "Lineage and cascade": families created by model tokens, and revocations
    // with cascade and dry run (mostly of older tokens and families, where the trees are).
    childOf,
    childOf,
    fc.tuple(back, options, fc.boolean()).map(([b, o, p]): ModelCommand => new RevokeToken(b, o, p)),
    fc.tuple(back, options, fc.boolean()).map(([b, o, p]): ModelCommand => new RevokeFamily(b, o, p)),
    back.map((b): ModelCommand => new InterruptedCascade(b)),
    back.map((b): ModelCommand => new Authenticate(b)),
    back.map((b): ModelCommand => new Introspect(b)),
    advance,
    edge,
    probe,
    probe,
    guesses,
    guesses,
    tick,
    tick,
    fc
      .tuple(back, fc.constantFrom<'none' | 'other'>('none', 'other'))
      .map(([b, p]): ModelCommand => new ThiefRotate(b, p)),
  ];
}
