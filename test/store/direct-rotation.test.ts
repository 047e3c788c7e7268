/**
 * Store.commitRotation, the fast path's rotation commit on the driver (src/store/direct-rotation.ts),
 * on every engine: it writes what the repository path writes, loses the compare-and-set cleanly,
 * leaves nothing behind when a write fails, and exactly one of many concurrent commits wins.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RotationCommit } from '../../src/app/store-ports.js';
import { mintSuccessor, mintToken } from '../../src/domain/new-token.js';
import { DEFAULT_LIMITS, resolvePolicy } from '../../src/domain/policy.js';
import type { NewTokenEvent } from '../../src/domain/token-event.js';
import type { TokenRecord } from '../../src/domain/token.js';
import { createTokenKeys } from '../../src/domain/token-keys.js';
import { RotorError } from '../../src/domain/errors.js';
import { familyLockSql } from '../../src/store/family-lock.js';
import { openStore, type KnexStore } from '../../src/store/knex-store.js';
import pg from 'pg';
import { ENGINES, describeOnPostgres, engineDatabase, scratchDatabase } from '../support/engines.js';

const keys = createTokenKeys(randomBytes(32));
const random = (n: number) => new Uint8Array(randomBytes(n));
const HOUR = 3_600_000;

function fresh(now: number, expiresAt = now + HOUR): TokenRecord {
  const policy = resolvePolicy({}, DEFAULT_LIMITS);
  return mintToken(
    {
      kind: 'service_account',
      ownerId: 'o',
      name: 'n',
      description: '',
      scopes: ['a', 'b'],
      audiences: ['x'],
      policy,
      expiresAt,
    },
    now,
    random,
    keys,
  ).record;
}

function successorOf(current: TokenRecord, now: number): TokenRecord {
  return mintSuccessor(current, { scopes: ['a'], expiresAt: now + HOUR }, now, random, random, keys).record;
}

function commitOf(current: TokenRecord, successor: TokenRecord, now: number): RotationCommit {
  const ev = (e: Omit<NewTokenEvent, 'actor' | 'peer' | 'act'>): NewTokenEvent => ({
    ...e,
    actor: current.id,
    peer: '127.0.0.1:1',
    act: { iss: 'https://ci.example', sub: 'job' },
  });
  return {
    currentId: current.id,
    successor,
    rotationKeyDigest: 'k'.repeat(64),
    clock: () => now,
    events: (at) => [
      ev({
        type: 'rotated',
        tokenId: current.id,
        familyId: current.familyId,
        successorId: successor.id,
        reason: 'rotated',
        occurredAt: at,
      }),
      ev({
        type: 'created',
        tokenId: successor.id,
        familyId: successor.familyId,
        successorId: null,
        reason: 'rotated',
        occurredAt: at,
      }),
    ],
  };
}

describe.each(ENGINES)('Store.commitRotation on %s', (engine) => {
  let db: { url: string; drop(): Promise<void> };
  let store: KnexStore;
  let wakes = 0;
  beforeAll(async () => {
    db = await engineDatabase(engine);
    store = await openStore({ url: db.url });
    store.onEventsCommitted(() => void wakes++);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  async function eventsOf(tokenId: string) {
    return store.events.list({ tokenId }, 100);
  }

  it('a win writes what the repository path writes: the predecessor rotated, the successor row, two events in order', async () => {
    const now = Date.now();
    const current = fresh(now);
    await store.tokens.insert(current);
    const successor = successorOf(current, now);
    const before = wakes;
    expect(await store.commitRotation(commitOf(current, successor, now + 5))).toBe(true);
    expect(wakes).toBe(before + 1);

    const old = await store.tokens.findById(current.id);
    expect(old).toEqual({
      ...current,
      revokedAt: now + 5,
      rotatedAt: now + 5,
      revokeReason: 'rotated',
      successorId: successor.id,
      rotationKeyDigest: 'k'.repeat(64),
      lastUsedAt: now + 5,
    });
    expect(await store.tokens.findById(successor.id)).toEqual(successor);
    expect(await store.tokens.findByDigest(successor.secretDigest)).toEqual(successor);

    const [rotated] = await eventsOf(current.id);
    const [created] = await eventsOf(successor.id);
    expect(rotated).toMatchObject({
      type: 'rotated',
      successorId: successor.id,
      familyId: current.familyId,
      actor: current.id,
      peer: '127.0.0.1:1',
      reason: 'rotated',
      occurredAt: now + 5,
      act: { iss: 'https://ci.example', sub: 'job' },
      thresholdSeconds: null,
    });
    expect(created).toMatchObject({
      type: 'created',
      successorId: null,
      familyId: current.familyId,
      occurredAt: now + 5,
    });
    expect(created!.sequence).toBe(rotated!.sequence + 1);
  });

  it('a cached row is dropped: the pool repository reads the rotated state right after the commit', async () => {
    const now = Date.now();
    const current = fresh(now);
    await store.tokens.insert(current);
    expect((await store.tokens.findByDigest(current.secretDigest))?.revokedAt).toBeNull(); // cached now
    expect(await store.commitRotation(commitOf(current, successorOf(current, now), now))).toBe(true);
    expect((await store.tokens.findByDigest(current.secretDigest))?.revokeReason).toBe('rotated');
  });

  it.each([
    ['already rotated', (t: TokenRecord) => ({ ...t, revokedAt: t.createdAt, revokeReason: 'rotated' as const })],
    ['revoked', (t: TokenRecord) => ({ ...t, revokedAt: t.createdAt, revokeReason: 'revoked' as const })],
    ['expired at commit time', (t: TokenRecord) => ({ ...t, expiresAt: t.createdAt + 1 })],
  ])('the compare-and-set loses for a token %s: false, nothing written, no wake-up', async (_name, shape) => {
    const now = Date.now();
    const current = shape(fresh(now));
    await store.tokens.insert(current);
    const successor = successorOf(current, now);
    const before = wakes;
    expect(await store.commitRotation(commitOf(current, successor, now + 10))).toBe(false);
    expect(wakes).toBe(before);
    expect(await store.tokens.findById(successor.id)).toBeUndefined();
    expect(await store.tokens.findById(current.id)).toEqual(current);
    expect(await eventsOf(current.id)).toEqual([]);
  });

  it('a failing insert rolls the whole commit back (the compare-and-set too), and the connection serves the next commit', async () => {
    const now = Date.now();
    const other = fresh(now);
    await store.tokens.insert(other);
    const current = fresh(now);
    await store.tokens.insert(current);
    // The successor collides with an existing row's secret digest (unique index).
    const clash = { ...successorOf(current, now), secretDigest: other.secretDigest };
    const before = wakes;
    await expect(store.commitRotation(commitOf(current, clash, now))).rejects.toThrow(/unique|UNIQUE|duplicate/);
    expect(wakes).toBe(before);
    expect(await store.tokens.findById(current.id)).toEqual(current);
    expect(await store.tokens.findById(clash.id)).toBeUndefined();
    expect(await eventsOf(current.id)).toEqual([]);

    // The same connection (SQLite has one) is out of the failed transaction: the retry commits.
    const successor = successorOf(current, now);
    expect(await store.commitRotation(commitOf(current, successor, now))).toBe(true);
    expect((await store.tokens.findById(current.id))?.successorId).toBe(successor.id);
  });

  it('20 concurrent commits of one token with different successors: exactly one wins, one successor row exists', async () => {
    const now = Date.now();
    const current = fresh(now);
    await store.tokens.insert(current);
    const successors = Array.from({ length: 20 }, () => successorOf(current, now));
    const results = await Promise.all(successors.map((s) => store.commitRotation(commitOf(current, s, now))));
    expect(results.filter(Boolean)).toHaveLength(1);
    const winner = successors[results.indexOf(true)]!;
    expect((await store.tokens.findById(current.id))?.successorId).toBe(winner.id);
    const written = await Promise.all(successors.map((s) => store.tokens.findById(s.id)));
    expect(written.filter((t) => t !== undefined).map((t) => t!.id)).toEqual([winner.id]);
    expect((await eventsOf(current.id)).map((e) => e.type)).toEqual(['rotated']);
  });

  it('interleaves with knex transactions on the same pool (the repository path) without either seeing the other half-done', async () => {
    const now = Date.now();
    const tokens = Array.from({ length: 10 }, () => fresh(now));
    for (const t of tokens) await store.tokens.insert(t);
    // Half go through Store.commitRotation, half through a knex transaction with the repositories.
    const outcomes = await Promise.all(
      tokens.map((t, i) => {
        const s = successorOf(t, now);
        const c = commitOf(t, s, now);
        if (i % 2 === 0) return store.commitRotation(c);
        return store.transaction(async (tx) => {
          if (!(await tx.tokens.markRotated(t.id, s.id, c.rotationKeyDigest, now))) return false;
          await tx.tokens.insert(s);
          await tx.events.append(c.events(now));
          return true;
        });
      }),
    );
    expect(outcomes).toEqual(tokens.map(() => true));
    for (const t of tokens) expect((await eventsOf(t.id)).map((e) => e.type)).toEqual(['rotated']);
  });

  /** A store whose pool has one connection (SQLite always has), and a way to hold that connection. */
  async function singleConnectionStore() {
    const one = await openStore({ url: db.url, poolMax: 1 });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let holding: () => void = () => undefined;
    const isHeld = new Promise<void>((r) => (holding = r));
    const holder = one.transaction(async () => {
      holding();
      await held;
    });
    await isHeld;
    return { one, release, holder };
  }

  it('reads its clock after the connection is free: a token that expired while the commit waited loses (rule 2)', async () => {
    const now = Date.now();
    const current = fresh(now, now + 60_000);
    await store.tokens.insert(current);
    const { one, release, holder } = await singleConnectionStore();
    try {
      let t = now;
      const commit = one.commitRotation({ ...commitOf(current, successorOf(current, now), now), clock: () => t });
      await new Promise((r) => setTimeout(r, 50));
      t = current.expiresAt + 1; // the token expires while the commit waits for the connection
      release();
      await holder;
      expect(await commit).toBe(false);
      expect((await one.tokens.findById(current.id))?.revokedAt).toBeNull();
    } finally {
      release();
      await one.close();
    }
  });

  it('close() waits for a running commit, then refuses new ones with unavailable', async () => {
    const now = Date.now();
    const current = fresh(now);
    await store.tokens.insert(current);
    const { one, release, holder } = await singleConnectionStore();
    const commit = one.commitRotation(commitOf(current, successorOf(current, now), now));
    let closed = false;
    const closing = one.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    await expect(one.commitRotation(commitOf(current, successorOf(current, now), now))).rejects.toMatchObject({
      code: 'unavailable',
    });
    release();
    await holder;
    expect(await commit).toBe(true);
    await closing;
    expect(closed).toBe(true);
    expect((await store.tokens.findById(current.id))?.revokeReason).toBe('rotated');
  });

  it('a statement that cannot be prepared fails the commit (no crash, no hang), and the connection serves the next one', async () => {
    const now = Date.now();
    const current = fresh(now);
    const fresh2 = await openStore({ url: db.url, poolMax: 1 });
    try {
      await fresh2.tokens.insert(current);
      await fresh2.knex.raw('alter table token_events rename to token_events_away');
      const failed = await fresh2.commitRotation(commitOf(current, successorOf(current, now), now)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(failed).toBeInstanceOf(Error);
      expect(failed).not.toBeInstanceOf(RotorError); // a schema error, not a lost database
      expect(String((failed as Error).message)).toMatch(/token_events/);
      await fresh2.knex.raw('alter table token_events_away rename to token_events');
      expect((await fresh2.tokens.findById(current.id))?.revokedAt).toBeNull();
      expect(await fresh2.commitRotation(commitOf(current, successorOf(current, now), now))).toBe(true);
    } finally {
      await fresh2.knex.raw('alter table token_events_away rename to token_events').catch(() => undefined);
      await fresh2.close();
    }
  });
});

describeOnPostgres('Store.commitRotation statements on postgres', () => {
  it('sends unnamed parameterised statements only, so a pooler in transaction mode can run it on any session', async () => {
    const db = await scratchDatabase();
    const store = await openStore({ url: db.url });
    const sent: unknown[] = [];
    const original = pg.Client.prototype.query;
    const now = Date.now();
    const current = fresh(now);
    try {
      await store.tokens.insert(current);
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        sent.push(args[0]);
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof original;
      expect(await store.commitRotation(commitOf(current, successorOf(current, now), now))).toBe(true);
    } finally {
      pg.Client.prototype.query = original;
      await store.close();
      await db.drop();
    }
    const texts = sent.map((q) => (typeof q === 'string' ? q : (q as { text: string }).text));
    expect(texts.map((t) => t.split(/[\s;]/)[0]?.toUpperCase())).toEqual([
      'BEGIN',
      'UPDATE',
      'INSERT',
      'INSERT',
      'COMMIT',
    ]);
    // The family's lock travels with BEGIN (src/store/family-lock.ts): no extra round trip.
    expect(texts[0]).toBe(`BEGIN; ${familyLockSql(current.familyId)}`);
    for (const q of sent) {
      expect(typeof q).toBe('object');
      expect(q).not.toHaveProperty('name');
    }
    // Parameterised: the values travel apart from the text.
    expect((sent[1] as { values?: unknown[] }).values?.length).toBeGreaterThan(0);
  });
});

describe('Store.commitRotation when the disk is full on sqlite', () => {
  it('never commits half a rotation: every failed commit leaves no successor, no events and the token active', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rotor-direct-full-'));
    const full = await openStore({ url: `sqlite://${join(dir, 'rotor.db')}` }, { ttlMs: 0, maxEntries: 1 });
    try {
      const now = Date.now();
      const tokens = Array.from({ length: 300 }, () => fresh(now));
      for (const t of tokens) await full.tokens.insert(t);
      const pages = ((await full.knex.raw('pragma page_count')) as { page_count: number }[])[0]!.page_count;
      await full.knex.raw(`pragma max_page_count = ${pages}`);
      let failures = 0;
      for (const t of tokens) {
        const successor = successorOf(t, now);
        const ok = await full.commitRotation(commitOf(t, successor, now)).then(
          () => true,
          () => false,
        );
        if (ok) continue;
        failures++;
        expect(await full.events.list({ tokenId: t.id }, 10)).toEqual([]);
        expect(await full.events.list({ tokenId: successor.id }, 10)).toEqual([]);
        expect(await full.tokens.findById(successor.id)).toBeUndefined();
        expect((await full.tokens.findById(t.id))?.revokedAt).toBeNull();
      }
      expect(failures).toBeGreaterThan(0); // the disk did fill up
    } finally {
      await full.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
