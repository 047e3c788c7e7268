/**
 * A reference model of token rotation, written from docs/rotation.md alone ("The rules, in order",
 * "Wrong retry keys", "Changes to one family are serialised", "Retire on first use", "Lineage and
 * cascade", "Who may do what", "States of a token and of a family") and docs/watch-expiry.md ("Events", "Thresholds and the expiry scheduler"). It
 * imports nothing from src/: the model-based test
 * (rotation-model.test.ts) runs random command sequences against it and against the real
 * application, and any disagreement is either a bug in the service or a gap in the doc.
 *
 * Tokens and families are named by their index in this model; the test maps indices to real ids.
 * Time is milliseconds on the model's own clock, moved only by `advance`.
 *
 * Where the doc does not say whether an instant at the very end of a window is inside it, the
 * model takes one reading and says so (`BOUNDARIES`); the report of the test lists them.
 */

/** docs/rotation.md "Wrong retry keys": "After `MAX_REFUSED_RETRY_KEYS` (5) such refusals, the next wrong key is reuse". */
export const MAX_REFUSED_RETRY_KEYS = 5;
/** docs/rotation.md "Wrong retry keys": racing wrong keys count "against a limit of its own, `MAX_RACING_RETRY_KEYS` (64)". */
export const MAX_RACING_RETRY_KEYS = 64;
/** docs/rotation.md "Wrong retry keys": "a wrong key that arrives within `RETRY_RACE_WINDOW_MS` (3 s) of the rotation". */
export const RETRY_RACE_WINDOW_MS = 3000;

/**
 * The model's reading of window ends the doc leaves open. Expiry is the doc's own rule ("now ≥
 * expires_at → EXPIRED"); the reuse grace, the retry window and the overlap window are read the
 * same way (the end instant is outside). The race window is "within 3 s of the rotation": a key
 * 3 s after the rotation is still racing.
 */
export const BOUNDARIES = {
  graceEndExclusive: true,
  retryWindowEndExclusive: true,
  overlapEndExclusive: true,
  raceWindowEndInclusive: true,
} as const;

/** docs/rotation.md "States of a token and of a family". */
export type ModelState = 'active' | 'rotated' | 'revoked' | 'expired';

/**
 * The revocation reasons a token row can carry (docs/design.md, Token record); `cascade`: a
 * descendant of a token revoked with cascade (docs/rotation.md "Lineage and cascade").
 */
export type RevokeReason = 'rotated' | 'revoked' | 'family_revoked' | 'reuse_detected' | 'cascade';

/** RevokeToken / RevokeFamily options (docs/rotation.md "Lineage and cascade"). */
export interface RevokeOptions {
  cascade: boolean;
  dryRun: boolean;
}

/**
 * What RevokeToken / RevokeFamily answers about the cascade: how many descendants it revoked (would
 * revoke), and on a dry run the ids it lists: `self` (the token when it would change, or the
 * family's members that would be revoked) first, then `descendants`, in an order the doc leaves open.
 */
export interface CascadeAnswer {
  cascadeCount: number;
  self: number[];
  descendants: number[];
}

/** How a rotation named its token: by presenting the secret, or by id (admin). */
export type NamedBy = 'presented' | 'by_id';

/** The per-token policy knobs the model varies (seconds), inherited by every successor. */
export interface ModelPolicy {
  reuseGraceSeconds: number;
  overlapSeconds: number;
  /** docs/rotation.md "Retire on first use" (only with overlapSeconds > 0). */
  retireOnFirstUse?: boolean;
  /**
   * Bound to the test's DPoP key (docs/dpop.md): the holder's rotations carry a proof of it, and a
   * thief's rotation without one is refused before any rule runs, changing nothing.
   */
  dpop?: boolean;
}

export interface ModelToken {
  family: number;
  previous: number | null;
  successor: number | null;
  createdAt: number;
  expiresAt: number;
  revokedAt: number | null;
  revokeReason: RevokeReason | null;
  /** Set when RevokeToken ended the overlap window of a rotated token (rule 7). */
  overlapEnded: boolean;
  /** The rotation that superseded it: its idempotency key (a name; null: none) and how it named the token. */
  rotation: { key: string | null; namedBy: NamedBy } | null;
  /** Wrong idempotency keys refused for it so far, by kind ("Wrong retry keys"). */
  refused: { racing: number; late: number };
  /** The scheduler's events written for it: thresholds (seconds) and whether EXPIRED was. */
  scheduled: { thresholds: number[]; expired: boolean };
  /**
   * "Retire on first use": until when the first use of this successor retires its predecessor
   * (the end of the predecessor's window at the rotation); null once used, or without the policy.
   */
  retireUntil: number | null;
  /**
   * "Lineage and cascade": a revocation with cascade reached it (`cascade_revoked_at`): the token
   * named by RevokeToken, every member of a family revoked by RevokeFamily or reuse detection with
   * cascade, every member of a descendant family.
   */
  cascadeMarked: boolean;
}

export interface ModelFamily {
  policy: ModelPolicy;
  /**
   * "Lineage and cascade": the token that authenticated the call that created the family (its
   * first token's `parent_id`, kept by every successor); null for the admin's families (the admin
   * is not a model token).
   */
  parent: number | null;
}

/** One row of `token_events` as the doc describes it (docs/watch-expiry.md "Events"). */
export interface ModelEvent {
  type:
    | 'created'
    | 'rotated'
    | 'replayed'
    | 'retry_refused'
    | 'revoked'
    | 'family_revoked'
    | 'expiring_soon'
    | 'expired'
    | 'predecessor_retired';
  token: number;
  family: number;
  successor: number | null;
  /** `created`: 'created' for a new family, 'rotated' for a successor (the SNAPSHOT reason). */
  reason: string | null;
  /** `expiring_soon`: the threshold crossed, in seconds. */
  threshold?: number;
}

/** What a rotation answers. */
export type RotationAnswer =
  | { ok: true; token: number; replayed: boolean }
  | { ok: false; code: 'already_rotated'; successor: number }
  | { ok: false; code: 'reuse_detected'; cause: 'presented_again' | 'wrong_retry_keys' }
  | { ok: false; code: 'token_revoked' | 'token_expired' | 'not_rotatable' };

/** What authenticating a presented secret answers (docs/rotation.md "Errors"). */
export type AuthAnswer = { ok: true } | { ok: false; code: 'token_revoked' | 'token_expired' };

/**
 * CreateToken with a model token as the bearer ("Who may do what"): a bearer that does not
 * authenticate is `unauthenticated`; a rotated one inside its overlap window "may not create"
 * (`permission_denied`).
 */
export type CreateChildAnswer =
  | { ok: true; token: number }
  | { ok: false; code: 'unauthenticated' | 'permission_denied' };

export class RotationModel {
  readonly tokens: ModelToken[] = [];
  readonly families: ModelFamily[] = [];
  /** The expected event log, in commit order. */
  readonly events: ModelEvent[] = [];

  /**
   * @param now the model clock (ms)
   * @param retryWindowSeconds `ROTOR_RETRY_WINDOW_SECONDS` (rule 3), a server limit
   * @param thresholdsSeconds `ROTOR_EXPIRY_THRESHOLDS` of the scheduler `tick` stands for
   */
  constructor(
    public now: number,
    readonly retryWindowSeconds: number,
    readonly thresholdsSeconds: readonly number[] = [],
  ) {}

  advance(ms: number): void {
    this.now += ms;
  }

  /** "State is derived from stored timestamps, never stored". */
  state(i: number): ModelState {
    const t = this.token(i);
    if (t.revokedAt !== null) return t.revokeReason === 'rotated' ? 'rotated' : 'revoked';
    return this.now >= t.expiresAt ? 'expired' : 'active';
  }

  /**
   * Rule 7 and design.md "States": an active token authenticates; a rotated one until
   * `min(expires_at, rotated_at + overlap)`, cut short when its successor is rotated, revoked or
   * expires, or when RevokeToken ended its window; nothing else does.
   */
  usable(i: number): boolean {
    // "Lineage and cascade": a token with an ancestor a cascade reached never authenticates again.
    return this.cascadedAncestor(i) === undefined && this.inWindow(i);
  }

  /** `usable` by the token's own state alone (lineage aside). */
  private inWindow(i: number): boolean {
    const t = this.token(i);
    const state = this.state(i);
    if (state === 'active') return true;
    if (state !== 'rotated') return false;
    const end = Math.min(t.expiresAt, (t.revokedAt ?? 0) + this.policyOf(i).overlapSeconds * 1000);
    return this.before(end, BOUNDARIES.overlapEndExclusive) && !t.overlapEnded && this.state(t.successor!) === 'active';
  }

  /** CreateToken by the admin: the first token of a new family, and its `created` event. */
  create(policy: ModelPolicy, lifetimeMs: number): number {
    return this.newFamily(policy, null, lifetimeMs);
  }

  /**
   * CreateToken with token `bearer` as the caller ("Lineage and cascade", "Who may do what"): the
   * bearer is authenticated first (a use of it, "Retire on first use"); then a rotated bearer
   * inside its overlap window may not create; otherwise a new family whose parent is the bearer,
   * with the bearer's policy (never looser) and expiring no later than the bearer.
   */
  createChild(bearer: number, lifetimeMs: number): CreateChildAnswer {
    if (!this.authenticate(bearer).ok) return { ok: false, code: 'unauthenticated' };
    if (this.state(bearer) === 'rotated') return { ok: false, code: 'permission_denied' };
    const b = this.token(bearer);
    const lifetime = Math.min(lifetimeMs, b.expiresAt - this.now);
    return { ok: true, token: this.newFamily(this.policyOf(bearer), bearer, lifetime) };
  }

  /** The nearest strict ancestor of token `i` a cascade reached (walking the families' parents). */
  cascadedAncestor(i: number): number | undefined {
    let parent = this.families[this.token(i).family]!.parent;
    while (parent !== null) {
      const p = this.token(parent);
      if (p.cascadeMarked) return parent;
      parent = this.families[p.family]!.parent;
    }
    return undefined;
  }

  private newFamily(policy: ModelPolicy, parent: number | null, lifetimeMs: number): number {
    const family = this.families.push({ policy, parent }) - 1;
    const token = this.mint(family, null, lifetimeMs);
    this.log({ type: 'created', token, family, successor: null, reason: 'created' });
    return token;
  }

  /**
   * Rules 2, 3, 5 and 6 for a request naming token `i` (by its secret, or by id as an admin),
   * with an optional idempotency key (`key` is its name in the test's key pool).
   */
  rotate(i: number, namedBy: NamedBy, key: string | undefined): RotationAnswer {
    // "Lineage and cascade": the token presented for rotation is refused as soon as an ancestor
    // carries the mark; named by id, rule 2's answer for a revoked token.
    if (this.cascadedAncestor(i) !== undefined)
      return namedBy === 'by_id' ? { ok: false, code: 'not_rotatable' } : { ok: false, code: 'token_revoked' };
    const state = this.state(i);
    // Rule 2 sends a superseded token to rule 3 even after it expired.
    if (state === 'rotated') return this.superseded(i, namedBy, key);
    if (state === 'revoked' || state === 'expired') {
      if (namedBy === 'by_id') return { ok: false, code: 'not_rotatable' };
      return { ok: false, code: state === 'revoked' ? 'token_revoked' : 'token_expired' };
    }
    // Rule 5: with no requested expiry and no default lifetime, the successor lives as long as
    // the predecessor was issued for (the lifetimes here are far below the max lifetime).
    const t = this.token(i);
    const successor = this.mint(t.family, i, t.expiresAt - t.createdAt);
    // "Retire on first use": the successor's first use before the predecessor's window ends retires it.
    const policy = this.policyOf(i);
    if (policy.retireOnFirstUse === true && policy.overlapSeconds > 0)
      this.token(successor).retireUntil = Math.min(t.expiresAt, this.now + policy.overlapSeconds * 1000);
    // Rule 6: the predecessor is revoked with reason `rotated` and linked to its successor.
    t.revokedAt = this.now;
    t.revokeReason = 'rotated';
    t.successor = successor;
    t.rotation = { key: key ?? null, namedBy };
    this.log({ type: 'rotated', token: i, family: t.family, successor, reason: 'rotated' });
    this.log({ type: 'created', token: successor, family: t.family, successor: null, reason: 'rotated' });
    return { ok: true, token: successor, replayed: false };
  }

  /** Rule 3, and "Wrong retry keys". */
  private superseded(i: number, namedBy: NamedBy, key: string | undefined): RotationAnswer {
    const t = this.token(i);
    const successor = t.successor!;
    const rotatedAt = t.revokedAt!;
    const rotation = t.rotation!;
    // "its successor is still the active head"
    const immediate = this.state(successor) === 'active';
    const sameKey = key !== undefined && rotation.key === key;
    if (
      immediate &&
      sameKey &&
      this.before(rotatedAt + this.retryWindowSeconds * 1000, BOUNDARIES.retryWindowEndExclusive)
    ) {
      // The secret is re-derived from what names the token (its secret, or its id when it was
      // rotated by id) and the key, then checked against the stored digest. The same key under
      // the other naming derives another secret; the doc does not say the answer then, and the
      // model says "already rotated", with nothing logged or counted.
      if (namedBy !== rotation.namedBy) return { ok: false, code: 'already_rotated', successor };
      this.log({ type: 'replayed', token: i, family: t.family, successor, reason: null });
      return { ok: true, token: successor, replayed: true };
    }
    // "Rotation by id never triggers reuse detection: naming a superseded token is a stale request."
    if (namedBy === 'by_id') return { ok: false, code: 'already_rotated', successor };
    const graceEnd = rotatedAt + this.policyOf(i).reuseGraceSeconds * 1000;
    if (immediate && this.before(graceEnd, BOUNDARIES.graceEndExclusive)) {
      // "A request without a key guesses nothing and is not counted", nor does the right key.
      if (key === undefined || sameKey) return { ok: false, code: 'already_rotated', successor };
      const elapsed = this.now - rotatedAt;
      const racing = BOUNDARIES.raceWindowEndInclusive
        ? elapsed <= RETRY_RACE_WINDOW_MS
        : elapsed < RETRY_RACE_WINDOW_MS;
      const count = racing ? t.refused.racing : t.refused.late;
      if (count >= (racing ? MAX_RACING_RETRY_KEYS : MAX_REFUSED_RETRY_KEYS)) {
        this.revokeFamilyCascading(t.family, 'reuse_detected');
        return { ok: false, code: 'reuse_detected', cause: 'wrong_retry_keys' };
      }
      if (racing) t.refused.racing++;
      else t.refused.late++;
      const reason = racing ? 'racing_rotation' : 'wrong_idempotency_key';
      this.log({ type: 'retry_refused', token: i, family: t.family, successor, reason });
      return { ok: false, code: 'already_rotated', successor };
    }
    // "Reuse detection revokes with cascade".
    this.revokeFamilyCascading(t.family, 'reuse_detected');
    return { ok: false, code: 'reuse_detected', cause: 'presented_again' };
  }

  /**
   * RevokeToken: an active token is revoked; a rotated one inside its overlap window has the
   * window ended and stays rotated; anything else is left as it is (and the call still succeeds).
   */
  revokeToken(i: number, opts: RevokeOptions = { cascade: false, dryRun: false }): CascadeAnswer {
    const self = this.revokeTokenWouldChange(i) ? [i] : [];
    if (opts.dryRun) {
      const descendants = opts.cascade ? this.descendantsToRevoke([i]) : [];
      return { cascadeCount: descendants.length, self, descendants };
    }
    this.revokeTokenItself(i);
    if (!opts.cascade) return { cascadeCount: 0, self: [], descendants: [] };
    // "plus a `cascade_revoked_at` mark on it", whatever its state.
    this.token(i).cascadeMarked = true;
    return { cascadeCount: this.cascade([i]), self: [], descendants: [] };
  }

  /** RevokeToken changes an active token, and a rotated one still inside its window. */
  private revokeTokenWouldChange(i: number): boolean {
    const state = this.state(i);
    return state === 'active' || (state === 'rotated' && this.inWindow(i));
  }

  /**
   * "A cascade that stops half-way (the process killed, the database lost)": RevokeToken with
   * cascade whose first transaction (the token revoked as without cascade, and marked) committed
   * and no batch did. Its descendants keep their own state but no longer authenticate; RevokeToken
   * with cascade again finishes it.
   */
  revokeTokenInterrupted(i: number): void {
    this.revokeTokenItself(i);
    this.token(i).cascadeMarked = true;
  }

  private revokeTokenItself(i: number): void {
    const t = this.token(i);
    const state = this.state(i);
    if (state === 'active') {
      t.revokedAt = this.now;
      t.revokeReason = 'revoked';
      this.log({ type: 'revoked', token: i, family: t.family, successor: null, reason: 'revoked' });
    } else if (state === 'rotated' && this.inWindow(i)) {
      t.overlapEnded = true;
      this.log({ type: 'revoked', token: i, family: t.family, successor: null, reason: 'overlap_ended' });
    }
  }

  /**
   * One pass of the expiry scheduler (docs/watch-expiry.md "Thresholds and the expiry
   * scheduler"), in steady state (the test runs the scheduler's first pass before any command):
   * tokens never revoked nor rotated ("`revoked_at IS NULL`") get EXPIRED once when
   * `now ≥ expires_at`, and otherwise one EXPIRING_SOON per threshold `T` their life spans
   * (`expires_at − created_at > T`) once `expires_at ≤ now + T` (the pass reads "`expires_at` in
   * `(from, now + T]`"); thresholds still pending when the token expired are never written ("only
   * `EXPIRED` is written"). The doc fixes no order within a pass; the test compares each pass's
   * events as a set. Returns how many events it wrote.
   */
  tick(): number {
    const before = this.events.length;
    this.tokens.forEach((t, i) => {
      if (t.revokedAt !== null) return;
      if (this.now >= t.expiresAt) {
        if (!t.scheduled.expired) {
          t.scheduled.expired = true;
          this.log({ type: 'expired', token: i, family: t.family, successor: null, reason: null });
        }
        return;
      }
      for (const threshold of this.thresholdsSeconds) {
        const ms = threshold * 1000;
        if (t.expiresAt - t.createdAt <= ms || t.scheduled.thresholds.includes(threshold)) continue;
        if (t.expiresAt > this.now + ms) continue;
        t.scheduled.thresholds.push(threshold);
        this.log({ type: 'expiring_soon', token: i, family: t.family, successor: null, reason: null, threshold });
      }
    });
    return this.events.length - before;
  }

  /**
   * RevokeFamily: the answer counts every member it revoked (`revoked_count`) and, with cascade,
   * the descendants (`cascade_revoked_count`); a dry run lists them and changes nothing.
   */
  revokeFamily(family: number): number {
    return this.revokeFamilyWith(family, { cascade: false, dryRun: false }).revokedCount;
  }

  revokeFamilyWith(family: number, opts: RevokeOptions): { revokedCount: number } & CascadeAnswer {
    if (opts.dryRun) {
      const self = this.revocableMembers(family);
      const descendants = opts.cascade ? this.descendantsToRevoke(this.membersOf(family)) : [];
      return { revokedCount: self.length, cascadeCount: descendants.length, self, descendants };
    }
    if (!opts.cascade) {
      return {
        revokedCount: this.revokeFamilyMembers(family, 'family_revoked'),
        cascadeCount: 0,
        self: [],
        descendants: [],
      };
    }
    const { revoked, cascaded } = this.revokeFamilyCascading(family, 'family_revoked');
    return { revokedCount: revoked, cascadeCount: cascaded, self: [], descendants: [] };
  }

  /**
   * A family revoked with cascade (RevokeFamily with `cascade`, reuse detection): its members as
   * without cascade, every member marked, then every descendant family.
   */
  private revokeFamilyCascading(
    family: number,
    reason: 'family_revoked' | 'reuse_detected',
  ): { revoked: number; cascaded: number } {
    const revoked = this.revokeFamilyMembers(family, reason);
    const members = this.membersOf(family);
    for (const m of members) this.token(m).cascadeMarked = true;
    return { revoked, cascaded: this.cascade(members) };
  }

  private membersOf(family: number): number[] {
    return this.tokens.flatMap((t, i) => (t.family === family ? [i] : []));
  }

  /** Members a family revocation would change: not yet revoked, or only rotated. */
  private revocableMembers(family: number): number[] {
    return this.membersOf(family).filter((i) => {
      const t = this.token(i);
      return t.revokedAt === null || t.revokeReason === 'rotated';
    });
  }

  /**
   * The families descended from tokens `roots` ("the families the token created, … and so on
   * down"), level by level; every family is reached once (the families form a tree).
   */
  private descendantFamilies(roots: readonly number[]): number[] {
    const found: number[] = [];
    let level = new Set(roots);
    while (level.size > 0) {
      const children = this.families.flatMap((f, k) => (f.parent !== null && level.has(f.parent) ? [k] : []));
      found.push(...children);
      level = new Set(children.flatMap((k) => this.membersOf(k)));
    }
    return found;
  }

  private descendantsToRevoke(roots: readonly number[]): number[] {
    return this.descendantFamilies(roots).flatMap((k) => this.revocableMembers(k));
  }

  /**
   * The cascade below tokens `roots`: every member of every descendant family is marked, and each
   * one not already revoked (rotated ones included) gets `revoke_reason` `cascade` and one
   * `family_revoked` event with reason `cascade`. Returns how many it revoked.
   */
  private cascade(roots: readonly number[]): number {
    let count = 0;
    for (const k of this.descendantFamilies(roots)) {
      for (const i of this.membersOf(k)) {
        const t = this.token(i);
        t.cascadeMarked = true;
        if (t.revokedAt !== null && t.revokeReason !== 'rotated') continue;
        t.revokedAt = this.now;
        t.revokeReason = 'cascade';
        count++;
        this.log({ type: 'family_revoked', token: i, family: k, successor: null, reason: 'cascade' });
      }
    }
    return count;
  }

  /** Rule 1 plus "Errors" for an ordinary call: a rotated token past its window is `token_revoked`. */
  authenticate(i: number): AuthAnswer {
    if (this.usable(i)) {
      this.firstUse(i);
      return { ok: true };
    }
    return { ok: false, code: this.state(i) === 'expired' ? 'token_expired' : 'token_revoked' };
  }

  /** IntrospectToken by a privileged caller: `active` exactly when the token authenticates; a use of it. */
  introspect(i: number): boolean {
    const active = this.usable(i);
    if (active) this.firstUse(i);
    return active;
  }

  /**
   * "Retire on first use": the first use of an active successor before its predecessor's window
   * ended ends that window (the predecessor stays rotated) and logs `predecessor_retired`, unless
   * the window was already ended (RevokeToken) or the predecessor revoked with its family; later
   * uses change nothing.
   */
  private firstUse(i: number): void {
    const t = this.token(i);
    if (t.retireUntil === null || t.previous === null || this.state(i) !== 'active') return;
    if (!this.before(t.retireUntil, true)) return;
    t.retireUntil = null;
    const p = this.token(t.previous);
    if (p.revokeReason !== 'rotated' || p.overlapEnded) return;
    p.overlapEnded = true;
    this.log({ type: 'predecessor_retired', token: t.previous, family: t.family, successor: i, reason: null });
  }

  /** The policy of token `i` (its family's: successors inherit it). */
  policyOf(i: number): ModelPolicy {
    return this.families[this.token(i).family]!.policy;
  }

  token(i: number): ModelToken {
    const t = this.tokens[i];
    if (t === undefined) throw new Error(`model: no token #${i}`);
    return t;
  }

  /**
   * Reuse detection and RevokeFamily: "every token of the family is revoked", one
   * `family_revoked` event per member, "the rotated ones included"; members already revoked for
   * another reason stay as they are.
   */
  private revokeFamilyMembers(family: number, reason: 'family_revoked' | 'reuse_detected'): number {
    let count = 0;
    this.tokens.forEach((t, i) => {
      if (t.family !== family || (t.revokedAt !== null && t.revokeReason !== 'rotated')) return;
      t.revokedAt = this.now;
      t.revokeReason = reason;
      count++;
      this.log({ type: 'family_revoked', token: i, family, successor: null, reason });
    });
    return count;
  }

  /** True while `now` is before `end` (or at it, when the end instant belongs to the window). */
  private before(end: number, endExclusive: boolean): boolean {
    return endExclusive ? this.now < end : this.now <= end;
  }

  private mint(family: number, previous: number | null, lifetimeMs: number): number {
    return (
      this.tokens.push({
        family,
        previous,
        successor: null,
        createdAt: this.now,
        expiresAt: this.now + lifetimeMs,
        revokedAt: null,
        revokeReason: null,
        overlapEnded: false,
        rotation: null,
        refused: { racing: 0, late: 0 },
        scheduled: { thresholds: [], expired: false },
        retireUntil: null,
        cascadeMarked: false,
      }) - 1
    );
  }

  private log(e: ModelEvent): void {
    this.events.push(e);
  }
}
