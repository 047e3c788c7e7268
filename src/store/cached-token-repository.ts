import type {
  DigestField,
  EndedTokenBatch,
  EndedTokenCursor,
  PageCursor,
  TokenFilter,
  TokenRepository,
} from '../app/store-ports.js';
import type { RevokeReason, TokenRecord } from '../domain/token.js';
import type { TokenCache } from './token-cache.js';
import { LAST_USED_RESOLUTION_MS } from './token-repository.js';

/**
 * Wraps a token repository with the in-process cache. Outside transactions reads go through the
 * cache; inside a transaction (`readThrough` false) reads always hit the database, and every
 * write invalidates the rows it touched and reports them to `onWrite` (the store invalidates
 * them again once the transaction has settled).
 */
export class CachedTokenRepository implements TokenRepository {
  constructor(
    private readonly base: TokenRepository,
    private readonly cache: TokenCache,
    private readonly readThrough: boolean,
    private readonly onWrite: (ids: string[]) => void = () => undefined,
  ) {}

  /** Database reads in flight outside transactions, by lookup key, with the cache epoch they started at. */
  private readonly inflight = new Map<string, { epoch: number; read: Promise<TokenRecord | undefined> }>();

  private wrote(ids: string[]): void {
    this.cache.invalidate(ids);
    this.onWrite(ids);
  }

  cachedById(id: string): TokenRecord | undefined {
    return this.readThrough ? this.cache.peekById(id) : undefined;
  }

  cachedByDigest(secretDigest: string): TokenRecord | undefined {
    return this.readThrough ? this.cache.peekByDigest(secretDigest) : undefined;
  }

  async findById(id: string): Promise<TokenRecord | undefined> {
    if (!this.readThrough) return this.base.findById(id);
    return this.cache.getById(id) ?? this.readShared(`id:${id}`, () => this.base.findById(id));
  }

  async findByDigest(secretDigest: string): Promise<TokenRecord | undefined> {
    if (!this.readThrough) return this.base.findByDigest(secretDigest);
    return (
      this.cache.getByDigest(secretDigest) ??
      this.readShared(`digest:${secretDigest}`, () => this.base.findByDigest(secretDigest))
    );
  }

  /** Older keys' digests are looked up rarely (a key change, or an unknown secret): no cache. */
  findByAnyDigest(secretDigests: readonly string[]): Promise<TokenRecord | undefined> {
    return this.base.findByAnyDigest(secretDigests);
  }

  redigest(id: string, field: DigestField, from: string, to: string): Promise<boolean> {
    return this.writing([id], () => this.base.redigest(id, field, from, to));
  }

  /**
   * A cache miss: one database read per key at a time. When a hot token's entry expires, every
   * call in flight would otherwise read the same row at once (about fifty reads a second for one
   * bearer and one introspected token under h2load, on SQLite's single connection). A caller joins
   * a read only if no write happened since it started (the cache's epoch), so it sees nothing older
   * than what a fresh read right now could have cached for it.
   */
  private readShared(key: string, read: () => Promise<TokenRecord | undefined>): Promise<TokenRecord | undefined> {
    const epoch = this.cache.readStarted();
    // With the cache off (TTL 0) every call reads for itself, as the setting promises.
    if (!this.cache.enabled) return read();
    const pending = this.inflight.get(key);
    if (pending && pending.epoch === epoch) return pending.read;
    const shared = read().then((row) => {
      if (row) this.cache.put(row, epoch);
      return row;
    });
    const entry = { epoch, read: shared };
    this.inflight.set(key, entry);
    const forget = () => {
      if (this.inflight.get(key) === entry) this.inflight.delete(key);
    };
    shared.then(forget, forget);
    return shared;
  }

  findFamilyRoot(familyId: string): Promise<TokenRecord | undefined> {
    return this.base.findFamilyRoot(familyId);
  }

  /** Invalidates before the write and again after it, so no read in between can cache the old row. */
  private async writing<T>(ids: string[], write: () => Promise<T>): Promise<T> {
    this.cache.invalidate(ids);
    try {
      return await write();
    } finally {
      this.wrote(ids);
    }
  }

  insert(token: TokenRecord): Promise<void> {
    return this.writing([token.id], () => this.base.insert(token));
  }

  markRotated(id: string, successorId: string, rotationKeyDigest: string | null, now: number): Promise<boolean> {
    return this.writing([id, successorId], () => this.base.markRotated(id, successorId, rotationKeyDigest, now));
  }

  revoke(id: string, reason: RevokeReason, now: number): Promise<boolean> {
    return this.writing([id], () => this.base.revoke(id, reason, now));
  }

  endOverlap(id: string, now: number): Promise<boolean> {
    return this.writing([id], () => this.base.endOverlap(id, now));
  }

  async revokeFamily(familyId: string, reason: RevokeReason, now: number): Promise<string[]> {
    const ids = await this.base.revokeFamily(familyId, reason, now);
    this.wrote(ids);
    return ids;
  }

  childFamiliesOfTokens(parentIds: readonly string[]): Promise<string[]> {
    return this.base.childFamiliesOfTokens(parentIds);
  }

  childFamiliesOfFamilies(familyIds: readonly string[]): Promise<string[]> {
    return this.base.childFamiliesOfFamilies(familyIds);
  }

  revocableMembers(familyIds: readonly string[]): Promise<{ id: string; familyId: string }[]> {
    return this.base.revocableMembers(familyIds);
  }

  async revokeFamiliesCascade(
    familyIds: readonly string[],
    now: number,
  ): Promise<{ revoked: { id: string; familyId: string }[]; changed: string[] }> {
    const r = await this.base.revokeFamiliesCascade(familyIds, now);
    this.wrote(r.changed);
    return r;
  }

  async markCascade(target: { ids: readonly string[] } | { familyId: string }, now: number): Promise<string[]> {
    const ids = await this.base.markCascade(target, now);
    this.wrote(ids);
    return ids;
  }

  clearRetirePending(id: string): Promise<boolean> {
    return this.writing([id], () => this.base.clearRetirePending(id));
  }

  list(filter: TokenFilter, now: number, limit: number, after: PageCursor | undefined): Promise<TokenRecord[]> {
    return this.base.list(filter, now, limit, after);
  }

  /** Skips the write (`undefined`, no promise) when the caller's copy shows a recent use. */
  touchLastUsed(token: TokenRecord, now: number): Promise<void> | undefined {
    if (token.lastUsedAt !== null && token.lastUsedAt > now - LAST_USED_RESOLUTION_MS) return undefined;
    this.cache.noteUse(token.id, now);
    return this.base.touchLastUsed(token, now);
  }

  existsActiveWithScope(scope: string, now: number): Promise<boolean> {
    return this.base.existsActiveWithScope(scope, now);
  }

  listActiveWithScope(scope: string, now: number): Promise<TokenRecord[]> {
    return this.base.listActiveWithScope(scope, now);
  }

  recordWorkload(tokenId: string, workloadKey: string, createdAt: number): Promise<void> {
    return this.base.recordWorkload(tokenId, workloadKey, createdAt);
  }

  liveOfWorkload(workloadKey: string, now: number): Promise<{ id: string; familyId: string }[]> {
    return this.base.liveOfWorkload(workloadKey, now);
  }

  /** Deleted rows leave the cache, so this process answers "unknown" for them at once. */
  async deleteEnded(q: EndedTokenBatch): Promise<{ deletedIds: string[]; next: EndedTokenCursor | undefined }> {
    const r = await this.base.deleteEnded(q);
    this.wrote(r.deletedIds);
    return r;
  }
}
