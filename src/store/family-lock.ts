/**
 * The per-family lock of PostgreSQL (docs/rotation.md, "Changes to one family are serialised").
 * Every transaction that changes a family takes it first: rotation (both paths), the idempotent
 * replay, reuse revocation, RevokeFamily, RevokeToken and the end of an overlap window. Under READ
 * COMMITTED a revocation reads the family's live members and then updates them; without the lock a
 * rotation of a member that committed between the two left its successor active in a family the
 * answer called revoked. With it, whichever transaction locks second sees the first one's commit.
 *
 * A transaction-scoped advisory lock (`pg_advisory_xact_lock(int, int)`), so nothing is left to
 * release: it ends with the transaction, however that ends. The two-key form lives in a key space
 * of its own, apart from the one-key locks of migrations and bootstrap. SQLite needs none: one
 * connection per process runs one transaction at a time.
 */

/** First key of every family lock: 'Rotf'. */
const FAMILY_LOCK_CLASS = 0x526f7466;

/**
 * Second key: FNV-1a (32 bits, signed as PostgreSQL's int4) of the family id. Two families that
 * share a key only wait for each other; the key is computed here so that the fast path can send it
 * in the same round trip as its BEGIN.
 */
export function familyLockKey(familyId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < familyId.length; i++) {
    h ^= familyId.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/**
 * The statement that takes the locks of many families (a cascade batch, src/app/cascade.ts) in
 * ascending key order, so two such transactions cannot deadlock, and a transaction holding one
 * family's lock never waits for another. Integers only, so it is safe as literal SQL.
 */
export function familyLocksSql(familyIds: readonly string[]): string {
  const keys = [...new Set(familyIds.map(familyLockKey))].sort((a, b) => a - b);
  return (
    `select count(pg_advisory_xact_lock(${FAMILY_LOCK_CLASS}, k)) from ` +
    `(select k from unnest(array[${keys.join(',')}]::int[]) as k order by k) as ordered`
  );
}

/** The statement that takes the lock of `familyId`: integers only, so it is safe as literal SQL. */
export function familyLockSql(familyId: string): string {
  return `select pg_advisory_xact_lock(${FAMILY_LOCK_CLASS}, ${familyLockKey(familyId)})`;
}
