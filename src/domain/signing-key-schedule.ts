/**
 * The life of a JWT signing key (docs/jwt-access-tokens.md, "Signing keys"). Keys form a chain
 * of numbered slots; the slot number is unique in storage, so replicas that decide at the same
 * moment to create the next key agree on one.
 *
 *   created_at ≤ not_before ─── signs ───▶ retire_at ─── published only ───▶ publish_until
 *
 * A key is published in the JWKS from its creation until `publish_until`, the latest expiry of
 * any token it signed. The next key is created (and so published) ahead of its `not_before`,
 * once the current key has less than the pre-publication lead left, so that resource servers
 * that cache the JWKS already know it when it starts signing.
 */
export interface SigningKeyMeta {
  kid: string;
  alg: string;
  slot: number;
  createdAt: number;
  notBefore: number;
  retireAt: number;
  publishUntil: number;
}

/** Rotation settings, in milliseconds. */
export interface KeySchedule {
  rotationMs: number;
  /** The longest JWT lifetime; a key stays published this long after it retires. */
  ttlMs: number;
}

/** A key the schedule wants created now. */
export interface KeyPlan {
  slot: number;
  notBefore: number;
  retireAt: number;
  publishUntil: number;
}

const DAY_MS = 86_400_000;

/** How long before a key is used it is published: a quarter of the rotation period, at most a day. */
export function prepublishLeadMs(schedule: KeySchedule): number {
  return Math.min(Math.floor(schedule.rotationMs / 4), DAY_MS);
}

/** The key that signs at `now`: the highest slot whose signing window contains `now`. */
export function signingKeyAt<K extends SigningKeyMeta>(keys: readonly K[], now: number): K | undefined {
  let best: K | undefined;
  for (const k of keys) {
    if (k.notBefore <= now && now < k.retireAt && (best === undefined || k.slot > best.slot)) best = k;
  }
  return best;
}

/**
 * The key to create at `now`, if any: a first key (or one after a gap in service) that signs
 * at once, or the successor of the current key once its pre-publication lead has begun.
 * `maxSlot` is the highest slot ever stored (-1 for none), so slots never repeat.
 */
export function keyToCreate(
  keys: readonly SigningKeyMeta[],
  maxSlot: number,
  now: number,
  schedule: KeySchedule,
): KeyPlan | undefined {
  const plan = (slot: number, notBefore: number): KeyPlan => ({
    slot,
    notBefore,
    retireAt: notBefore + schedule.rotationMs,
    publishUntil: notBefore + schedule.rotationMs + schedule.ttlMs,
  });
  const current = signingKeyAt(keys, now);
  if (current === undefined) return plan(maxSlot + 1, now);
  if (now < current.retireAt - prepublishLeadMs(schedule)) return undefined;
  if (maxSlot > current.slot) return undefined;
  return plan(current.slot + 1, current.retireAt);
}

/** Keys in the JWKS at `now`: every key until the last token it signed has expired. */
export function publishedKeys<K extends SigningKeyMeta>(keys: readonly K[], now: number): K[] {
  return keys.filter((k) => now < k.publishUntil).sort((a, b) => b.slot - a.slot);
}
