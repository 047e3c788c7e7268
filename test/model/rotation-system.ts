/**
 * The real side of the model-based rotation test: the application in process (createApp over a
 * real database, a clock the test moves), driven through its use cases with an admin caller, and
 * the invariants read back from the database after every command.
 */
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { introspect } from '../../src/app/introspection.js';
import { type Caller, authenticate, retireOnFirstUse, usableBySecret } from '../../src/app/authenticate.js';
import { revokeFamily, revokeFamilyWith, revokeToken, revokeTokenWith } from '../../src/app/revocation.js';
import { rotate } from '../../src/app/rotation-service.js';
import { createToken } from '../../src/app/token-service.js';
import { isRotorError } from '../../src/domain/errors.js';
import type { ExpiryScheduler } from '../../src/expiry/scheduler.js';
import type { RotorApp } from '../../src/runtime/create-app.js';
import type { DpopRequest } from '../../src/app/dpop.js';
import { dpopProof, newDpopKey } from '../support/dpop.js';
import type { Engine } from '../support/engines.js';

/** The holder's DPoP key of every bound family, and a thief's. */
const MODEL_DPOP_KEY = newDpopKey();
const THIEF_DPOP_KEY = newDpopKey();
import type { ModelEvent, ModelPolicy, ModelState, NamedBy, RevokeOptions, RotationModel } from './rotation-model.js';

/** A clock both sides share; only the test moves it. */
export interface TestClock {
  t: number;
}

/** What a use case answered, reduced to what the model predicts. */
export type Outcome =
  | { ok: true; id: string; secret: string; familyId: string; previousId: string | null; parentId: string | null }
  | { ok: false; code: string; message: string; successorId: string | undefined };

interface TokenRow {
  id: string;
  family_id: string;
  successor_id: string | null;
  expires_at: number | string;
  revoked_at: number | string | null;
  revoke_reason: string | null;
  overlap_ended_at: number | string | null;
  parent_id: string | null;
  cascade_revoked_at: number | string | null;
}

interface EventRow {
  sequence: number | string;
  type: string;
  token_id: string;
  family_id: string;
  successor_id: string | null;
  reason: string | null;
  threshold_seconds: number | string | null;
}

/** One event as compared: the log's columns the doc defines. */
type LoggedEvent = Pick<EventRow, 'type' | 'token_id' | 'family_id' | 'successor_id' | 'reason'> & {
  threshold: number | null;
};

/** 192 random bits, URL-safe: an idempotency key the service accepts (docs/rotation.md question 2). */
const newKey = () => randomBytes(24).toString('base64url');

/** The application under test during one command sequence. Model token #i is real token `ids[i]`. */
export class RealSystem {
  readonly ids: string[] = [];
  readonly secrets: string[] = [];
  readonly familyIds: string[] = [];
  /** Idempotency keys by the model's name for them, drawn on first use. */
  private readonly keys = new Map<string, string>();
  /** The expiry scheduler of the application (its passes run only through `tick`). */
  scheduler: ExpiryScheduler | undefined;

  constructor(
    readonly app: RotorApp,
    readonly admin: Caller,
    readonly clock: TestClock,
    readonly engine: Engine,
    /** The newest event sequence before this sequence of commands started. */
    readonly startSequence: number,
    /** How often each kind of answer was seen, across sequences (what the runs reached). */
    readonly coverage: Map<string, number> = new Map(),
  ) {}

  /**
   * The same tokens, families and idempotency keys driven through `app`: another replica on the
   * same database. With `copy`, the token lists are its own (to try one explanation of a
   * concurrent run without touching this one's).
   */
  view(app: RotorApp = this.app, copy = false): RealSystem {
    const other = new RealSystem(app, this.admin, this.clock, this.engine, this.startSequence, this.coverage);
    other.ids.push(...this.ids);
    other.secrets.push(...this.secrets);
    other.familyIds.push(...this.familyIds);
    if (!copy) Object.assign(other, { ids: this.ids, secrets: this.secrets, familyIds: this.familyIds });
    Object.assign(other, { keys: this.keys });
    other.scheduler = this.scheduler;
    return other;
  }

  /** Counts one answer of the model's, by kind. */
  note(kind: string): void {
    this.coverage.set(kind, (this.coverage.get(kind) ?? 0) + 1);
  }

  /** The newest sequence in the log (0 when empty). */
  static async lastSequence(app: RotorApp): Promise<number> {
    const row = await app.store.knex('token_events').max('sequence as last').first();
    return Number(row?.last ?? 0);
  }

  async create({ dpop, ...policy }: ModelPolicy, lifetimeMs: number): Promise<Outcome> {
    const dpopJkt = dpop === true ? (await MODEL_DPOP_KEY).jkt : undefined;
    return outcome(
      createToken(this.app, this.admin, {
        kind: 'service_account',
        ownerId: 'model',
        name: 'model',
        description: '',
        scopes: ['rotor:rotate'],
        audiences: [],
        expiresAt: this.clock.t + lifetimeMs,
        policy: { ...policy, ...(dpopJkt !== undefined && { dpopJkt }) },
      }),
    );
  }

  /**
   * CreateToken with model token `bearer` as the caller, authenticated as a call's bearer is
   * (src/app/authenticate.ts `authenticate`): the child's owner, scopes and policy are the
   * bearer's, its expiry `lifetimeMs` from now, capped at the bearer's.
   */
  async createChild(bearer: number, lifetimeMs: number): Promise<Outcome> {
    const call = async () => {
      const caller = await authenticate(this.app, { authorization: `Bearer ${this.secret(bearer)}`, peer: null });
      const t = caller.token;
      return createToken(this.app, caller, {
        kind: 'service_account',
        ownerId: t.ownerId,
        name: 'model child',
        description: '',
        scopes: t.scopes,
        audiences: t.audiences,
        expiresAt: Math.min(this.clock.t + lifetimeMs, t.expiresAt),
        policy: {
          reuseGraceSeconds: t.policy.reuseGraceSeconds,
          overlapSeconds: t.policy.overlapSeconds,
          ...(t.policy.retireOnFirstUse === true && { retireOnFirstUse: true }),
        },
      });
    };
    return outcome(call());
  }

  /**
   * Rotates token `i`. Presented, a token bound to a key carries a proof: the holder's
   * (`proof` 'holder', the default), none, or one made with another key (a thief's).
   */
  async rotate(
    i: number,
    namedBy: NamedBy,
    keyName: string | undefined,
    proof: 'holder' | 'none' | 'other' = 'holder',
  ): Promise<Outcome> {
    const target =
      namedBy === 'presented'
        ? { mode: 'presented' as const, secret: this.secret(i), dpop: await this.dpopFor(i, proof) }
        : { mode: 'by_id' as const, id: this.id(i), caller: this.admin };
    const idempotencyKey = keyName === undefined ? undefined : this.key(keyName);
    return outcome(
      rotate(this.app, target, { idempotencyKey, scopes: [], audiences: [], expiresAt: undefined, peer: null }),
    );
  }

  /** The DPoP facts of a presented rotation of token `i`: a proof for a bound token only. */
  private async dpopFor(i: number, proof: 'holder' | 'none' | 'other'): Promise<DpopRequest | undefined> {
    if (proof === 'none') return undefined;
    const record = await this.app.store.tokens.findById(this.id(i));
    if (record?.policy.dpopJkt === undefined) return undefined;
    const key = await (proof === 'holder' ? MODEL_DPOP_KEY : THIEF_DPOP_KEY);
    const url = `${this.app.jwt.issuer}/oauth/token`;
    return {
      proof: await dpopProof(key, { htu: url, iat: Math.floor(this.clock.t / 1000) }),
      htm: 'POST',
      url,
      path: '/oauth/token',
    };
  }

  async revokeToken(i: number): Promise<Outcome> {
    return outcome(revokeToken(this.app, this.admin, this.id(i)).then((record) => ({ record, secret: '' })));
  }

  /** RevokeToken with cascade / dry run: what it answered. */
  async revokeTokenWith(
    i: number,
    opts: RevokeOptions,
  ): Promise<{ id: string; cascadeCount: number; dryRunIds: string[]; truncated: boolean }> {
    const o = await revokeTokenWith(this.app, this.admin, this.id(i), opts);
    return { id: o.token.id, cascadeCount: o.cascadeCount, dryRunIds: o.dryRunIds, truncated: o.truncated };
  }

  /**
   * RevokeToken with cascade, cut off after its first transaction: every cascade batch (a
   * transaction over `families`) fails as if the process had been killed. The call's error.
   */
  async revokeTokenInterrupted(i: number): Promise<string> {
    const store = this.app.store;
    const killed = new Error('killed before the cascade batches');
    const cut = new Proxy(store, {
      get(target, p) {
        if (p === 'transaction')
          return (fn: never, opts?: { families?: unknown }) =>
            opts?.families !== undefined ? Promise.reject(killed) : target.transaction(fn, opts as never);
        const v = Reflect.get(target, p, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    try {
      await revokeTokenWith({ ...this.app, store: cut }, this.admin, this.id(i), { cascade: true, dryRun: false });
      return 'finished';
    } catch (e) {
      if (e !== killed) throw e;
      return 'interrupted';
    }
  }

  /** RevokeFamily with cascade / dry run: what it answered. */
  async revokeFamilyWith(
    f: number,
    opts: RevokeOptions,
  ): Promise<{ revokedCount: number; cascadeCount: number; dryRunIds: string[]; truncated: boolean }> {
    return revokeFamilyWith(this.app, this.admin, this.familyId(f), opts);
  }

  /** One pass of the expiry scheduler; the number of events it wrote. */
  async tick(): Promise<number> {
    if (this.scheduler === undefined) throw new Error('no expiry scheduler in this system');
    const r = await this.scheduler.runOnce();
    return r.expiringSoon + r.expired;
  }

  async revokeFamily(f: number): Promise<number> {
    return revokeFamily(this.app, this.admin, this.familyId(f));
  }

  async authenticate(i: number): Promise<Outcome> {
    // What `authenticate` does with a bearer, without turning the answer into `unauthenticated`.
    return outcome(
      (async () => {
        // usableBySecret may answer (or throw) at once: awaited inside an async function either way.
        const { token, now } = await usableBySecret(this.app, this.secret(i));
        await retireOnFirstUse(this.app, token, now, null);
        return { record: token, secret: '' };
      })(),
    );
  }

  async introspect(i: number): Promise<boolean> {
    return (await introspect(this.app, this.admin, this.secret(i))).active;
  }

  /** Records a token the model and the service both minted. */
  adopt(id: string, secret: string): void {
    this.ids.push(id);
    this.secrets.push(secret);
  }

  id(i: number): string {
    const id = this.ids[i];
    if (id === undefined) throw new Error(`no real token for model token #${i}`);
    return id;
  }

  secret(i: number): string {
    const s = this.secrets[i];
    if (s === undefined) throw new Error(`no secret for model token #${i}`);
    return s;
  }

  familyId(f: number): string {
    const id = this.familyIds[f];
    if (id === undefined) throw new Error(`no real family for model family #${f}`);
    return id;
  }

  /**
   * Everything that must hold after every command (docs/rotation.md "States", "Changes to one
   * family are serialised"; docs/watch-expiry.md "Events"), read from the database.
   */
  async verify(model: RotationModel): Promise<void> {
    const now = this.clock.t;
    expect(this.app.now(), 'the application clock is the model clock').toBe(model.now);
    const [rows, events]: [TokenRow[], EventRow[]] = await Promise.all([
      this.app.store.knex('tokens').whereIn('family_id', this.familyIds).select('*'),
      this.app.store
        .knex('token_events')
        .where('sequence', '>', this.startSequence)
        .orderBy('sequence', 'asc')
        .select('sequence', 'type', 'token_id', 'family_id', 'successor_id', 'reason', 'threshold_seconds'),
    ]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    // The admin's families have the admin as parent (not a model token).
    const parentOf = (f: number) => {
      const p = model.families[f]!.parent;
      return p === null ? this.admin.token.id : this.id(p);
    };
    expect(rows.length, 'tokens in the run families: one row per model token, no extra successor').toBe(
      model.tokens.length,
    );
    model.tokens.forEach((t, i) => {
      const row = byId.get(this.id(i));
      expect(row, `token #${i} exists`).toBeDefined();
      const actual = {
        family: row!.family_id,
        state: stateOf(row!, now),
        revokeReason: row!.revoke_reason,
        successor: row!.successor_id,
        expiresAt: Number(row!.expires_at),
        overlapEnded: row!.overlap_ended_at !== null,
        parent: row!.parent_id,
        cascadeMarked: row!.cascade_revoked_at !== null,
      };
      expect(actual, `token #${i} (${this.id(i)})`).toEqual({
        family: this.familyId(t.family),
        state: model.state(i),
        revokeReason: t.revokeReason,
        successor: t.successor === null ? null : this.id(t.successor),
        expiresAt: t.expiresAt,
        overlapEnded: t.overlapEnded,
        parent: parentOf(t.family),
        cascadeMarked: t.cascadeMarked,
      });
    });
    for (const familyId of this.familyIds) {
      const members = rows.filter((r) => r.family_id === familyId);
      const active = members.filter((r) => stateOf(r, now) === 'active');
      expect(active.length, `family ${familyId}: at most one active token`).toBeLessThanOrEqual(1);
      const revoked = members.some(
        (r) =>
          r.revoke_reason === 'family_revoked' || r.revoke_reason === 'reuse_detected' || r.revoke_reason === 'cascade',
      );
      if (revoked)
        expect(
          active.map((r) => r.id),
          `revoked family ${familyId}: no active member`,
        ).toEqual([]);
      for (const r of members.filter((m) => m.successor_id !== null)) {
        expect(byId.get(r.successor_id!)?.family_id, `successor of ${r.id} exists in its family`).toBe(familyId);
      }
    }
    // "Lineage and cascade": no active token has an ancestor a cascade reached, nor an ancestor
    // family a cascade revoked (no descendant of a cascade-revoked family authenticates).
    const cascadedFamilies = new Set(rows.filter((r) => r.revoke_reason === 'cascade').map((r) => r.family_id));
    // A cascade cut off before its batches leaves descendants active by their own state: those
    // must be refused when presented.
    for (const r of rows.filter((row) => stateOf(row, now) === 'active')) {
      const cut: string[] = [];
      for (let p = byId.get(r.parent_id ?? ''); p !== undefined; p = byId.get(p.parent_id ?? '')) {
        if (p.cascade_revoked_at !== null || cascadedFamilies.has(p.family_id)) cut.push(p.id);
      }
      if (cut.length === 0) continue;
      const i = this.ids.indexOf(r.id);
      const presented = await outcome(
        (async () => ({ record: (await usableBySecret(this.app, this.secret(i))).token, secret: '' }))(),
      );
      expect(
        presented.ok ? 'authenticates' : presented.message,
        `active token ${r.id} below a cascade (ancestors ${cut.join(', ')}): refused`,
      ).toContain('an ancestor was revoked with cascade');
    }
    this.verifyLog(events, model.events);
  }

  /**
   * The log since the run started equals the model's, in order; sequences increase (without a gap
   * on SQLite). The scheduler also writes events of earlier runs' tokens (still alive on the same
   * database); those are left out of the comparison.
   */
  private verifyLog(all: readonly EventRow[], expected: readonly ModelEvent[]): void {
    const sequences = all.map((r) => Number(r.sequence));
    sequences.forEach((s, k) => {
      const previous = k === 0 ? this.startSequence : sequences[k - 1]!;
      if (this.engine === 'sqlite') expect(s, `event sequence ${k} follows without a gap`).toBe(previous + 1);
      else expect(s, `event sequence ${k} increases`).toBeGreaterThan(previous);
    });
    const runFamilies = new Set(this.familyIds);
    const rows = all.filter((r) => runFamilies.has(r.family_id));
    const actual = rows.map(
      (r): LoggedEvent => ({
        type: r.type,
        token_id: r.token_id,
        family_id: r.family_id,
        successor_id: r.successor_id,
        // A new family's `created` carries no reason in the log; WatchExpiry calls it `created`.
        reason: r.type === 'created' && r.reason === null ? 'created' : r.reason,
        threshold: r.threshold_seconds === null ? null : Number(r.threshold_seconds),
      }),
    );
    const wanted = expected.map(
      (e): LoggedEvent => ({
        type: e.type,
        token_id: this.id(e.token),
        family_id: this.familyId(e.family),
        successor_id: e.successor === null ? null : this.id(e.successor),
        reason: e.reason,
        threshold: e.threshold ?? null,
      }),
    );
    expect(inBatchOrder(actual), 'the event log').toEqual(inBatchOrder(wanted));
  }

  private key(name: string): string {
    let key = this.keys.get(name);
    if (key === undefined) {
      key = newKey();
      this.keys.set(name, key);
    }
    return key;
  }
}

/** docs/rotation.md "States": derived from the stored timestamps. */
function stateOf(r: TokenRow, now: number): ModelState {
  if (r.revoked_at !== null) return r.revoke_reason === 'rotated' ? 'rotated' : 'revoked';
  return now >= Number(r.expires_at) ? 'expired' : 'active';
}

/**
 * The doc fixes one `family_revoked` event per member but not their order within the one
 * revocation, nor the order of a cascade's events, nor that of a scheduler pass's events: each
 * run of consecutive `family_revoked` events of one family, each run of consecutive
 * `family_revoked` events with reason `cascade` (any families), and each run of consecutive
 * `expiring_soon` / `expired` events, is compared as a set.
 */
function inBatchOrder(events: LoggedEvent[]): LoggedEvent[] {
  const out: LoggedEvent[] = [];
  let batch: LoggedEvent[] = [];
  const scheduled = (e: LoggedEvent) => e.type === 'expiring_soon' || e.type === 'expired';
  const cascaded = (e: LoggedEvent) => e.type === 'family_revoked' && e.reason === 'cascade';
  const key = (e: LoggedEvent) => `${e.type}:${e.token_id}:${e.threshold ?? ''}`;
  const flush = () => {
    out.push(...batch.sort((a, b) => key(a).localeCompare(key(b))));
    batch = [];
  };
  for (const e of events) {
    const first = batch[0];
    const joins =
      first !== undefined &&
      ((e.type === 'family_revoked' &&
        first.type === 'family_revoked' &&
        (first.family_id === e.family_id || (cascaded(e) && cascaded(first)))) ||
        (scheduled(e) && scheduled(first)));
    if (!joins) flush();
    if (e.type === 'family_revoked' || scheduled(e)) batch.push(e);
    else out.push(e);
  }
  flush();
  return out;
}

/** The answer of a use case that mints or returns a token, or its RotorError. */
async function outcome(
  call: Promise<{
    record: { id: string; familyId: string; previousId: string | null; parentId: string | null };
    secret: string;
  }>,
): Promise<Outcome> {
  try {
    const { record, secret } = await call;
    return {
      ok: true,
      id: record.id,
      secret,
      familyId: record.familyId,
      previousId: record.previousId,
      parentId: record.parentId,
    };
  } catch (e) {
    if (!isRotorError(e)) throw e;
    const successorId = typeof e.details?.successorId === 'string' ? e.details.successorId : undefined;
    return { ok: false, code: e.code, message: e.message, successorId };
  }
}
