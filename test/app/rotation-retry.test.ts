/**
 * The retry path of `rotate` (src/app/rotation-service.ts; docs/rotation.md rule 6): when the fast
 * path's compare-and-set (`Store.commitRotation`) loses, the authoritative path decides again in a
 * transaction, re-running it while its own compare-and-set loses, at most three times
 * (`MAX_ATTEMPTS`, docs/design.md "One rotation through the code"), then answers `unavailable`.
 * A lost race is answered by rule 3, never by a second successor.
 *
 * The use case runs over a real KnexStore, seen through `LosingStore`: a Store whose
 * compare-and-sets can be made to lose a given number of times. In a transaction the real
 * `markRotated` runs and is then reported lost, so the test also sees that a lost attempt is
 * rolled back rather than committed.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AppContext } from '../../src/app/context.js';
import { rotate, type RotationOptions } from '../../src/app/rotation-service.js';
import type { Repositories, RotationCommit, Store, TokenRepository } from '../../src/app/store-ports.js';
import { insertCreated } from '../../src/app/token-service.js';
import { RotorError } from '../../src/domain/errors.js';
import { mintToken, type MintedToken } from '../../src/domain/new-token.js';
import { resolvePolicy } from '../../src/domain/policy.js';
import { tokenState } from '../../src/domain/token.js';
import { loadConfig } from '../../src/runtime/config.js';
import { BRAKES_OFF } from '../support/brakes-off.js';
import { createLogger } from '../../src/runtime/logger.js';
import { createApp } from '../../src/runtime/server.js';
import type { KnexStore } from '../../src/store/knex-store.js';
import { ENGINES, engineDatabase, type ScratchDatabase } from '../support/engines.js';

const HOUR = 3_600_000;
/** The documented number of authoritative attempts (docs/design.md); pinned here, not imported. */
const ATTEMPTS = 3;
const GAVE_UP = 'rotation kept losing to concurrent rotations; retry';

/** A Store over a real one whose compare-and-sets lose on demand, counting what `rotate` asked of it. */
class LosingStore implements Store {
  /** How many more fast-path commits report a lost compare-and-set (without writing). */
  fastLosses = 0;
  /** How many more `markRotated` calls in a transaction report a lost compare-and-set. */
  txLosses = 0;
  /** Runs before the fast-path commit, which then really happens: a rival's rotation lands first. */
  beforeFastCommit: (() => Promise<void>) | undefined;
  /** Thrown by `markRotated` in a transaction instead of running it. */
  txFailure: Error | undefined;
  fastCommits = 0;
  transactions = 0;
  markRotatedCalls = 0;

  constructor(private readonly inner: KnexStore) {}

  get tokens(): TokenRepository {
    return this.inner.tokens;
  }

  get events(): Repositories['events'] {
    return this.inner.events;
  }

  async commitRotation(commit: RotationCommit): Promise<boolean> {
    this.fastCommits++;
    if (this.fastLosses > 0) {
      this.fastLosses--;
      return false;
    }
    await this.beforeFastCommit?.();
    return this.inner.commitRotation(commit);
  }

  transaction<T>(work: (tx: Repositories) => Promise<T>, options?: { lock?: string; family?: string }): Promise<T> {
    this.transactions++;
    return this.inner.transaction((tx) => work({ tokens: this.losing(tx.tokens), events: tx.events }), options);
  }

  runExclusive: Store['runExclusive'] = (name, work) => this.inner.runExclusive(name, work);

  close(): Promise<void> {
    return this.inner.close();
  }

  /** `tokens` of a transaction whose `markRotated` fails or loses as configured. */
  private losing(tokens: TokenRepository): TokenRepository {
    const markRotated: TokenRepository['markRotated'] = async (...args) => {
      this.markRotatedCalls++;
      if (this.txFailure !== undefined) throw this.txFailure;
      const won = await tokens.markRotated(...args);
      if (this.txLosses === 0) return won;
      this.txLosses--;
      return false;
    };
    return new Proxy(tokens, {
      get(target, prop) {
        if (prop === 'markRotated') return markRotated;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }
}

type BaseApp = AppContext & { store: KnexStore };

const options = (idempotencyKey?: string): RotationOptions => ({
  idempotencyKey,
  scopes: [],
  audiences: [],
  expiresAt: undefined,
  peer: null,
});

/** 128 random bits, URL-safe: a key the service accepts (src/domain/key-material.ts). */
const newKey = () => randomBytes(16).toString('base64url');

describe.each(ENGINES)('rotation retry path on %s', (engine) => {
  let db: ScratchDatabase;
  /** The app over the real store: a rival replica's rotations go through it unhindered. */
  let base: BaseApp;
  let store: LosingStore;
  /** The app under test, over the losing store. */
  let app: AppContext;

  beforeAll(async () => {
    db = await engineDatabase(engine);
    const config = loadConfig({
      ...BRAKES_OFF,
      ROTOR_DATA_DIR: mkdtempSync(join(tmpdir(), 'rotor-retry-data-')),
      ROTOR_DATABASE_URL: db.url,
      ROTOR_SECRET: randomBytes(32).toString('hex'),
      ROTOR_TOKEN_CACHE_TTL_MS: '0',
    });
    base = await createApp(
      config,
      createLogger('error', () => undefined),
    );
  });
  afterAll(async () => {
    await base?.store.close();
    await db?.drop();
  });
  beforeEach(() => {
    store = new LosingStore(base.store);
    app = { ...base, store };
  });

  /** A new family of one token that may rotate itself, with a reuse grace so rule 3 answers "already rotated". */
  async function newFamily(): Promise<MintedToken> {
    const now = base.now();
    const policy = resolvePolicy({ reuseGraceSeconds: 60 }, base.limits);
    const minted = mintToken(
      {
        kind: 'service_account',
        ownerId: 'retry',
        name: 'n',
        description: '',
        scopes: ['rotor:rotate'],
        audiences: [],
        policy,
        expiresAt: now + HOUR,
      },
      now,
      base.random,
      base.keys,
    );
    await base.store.transaction((tx) => insertCreated(tx, minted, { actor: 'system', peer: null }, now));
    return minted;
  }

  /** Every token of the family and every event it logged, from the database. */
  async function written(familyId: string) {
    const tokens = await base.store.tokens.list({ familyId }, base.now(), 100, undefined);
    const events = await base.store.events.list({ familyId }, 100);
    return { tokens, events: events.map((e) => `${e.type} ${e.tokenId}`) };
  }

  it('the fast path loses once, the authoritative path wins: exactly one successor, its events logged once', async () => {
    const first = await newFamily();
    store.fastLosses = 1;
    const minted = await rotate(app, { mode: 'presented', secret: first.secret }, options());
    expect(store.fastCommits).toBe(1);
    expect(store.transactions).toBe(1);
    expect(minted.record.previousId).toBe(first.record.id);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id).sort()).toEqual([first.record.id, minted.record.id].sort());
    expect(tokens.find((t) => t.id === first.record.id)).toMatchObject({
      revokeReason: 'rotated',
      successorId: minted.record.id,
    });
    expect(base.keys.secretDigest(minted.secret)).toBe(tokens.find((t) => t.id === minted.record.id)?.secretDigest);
    expect(events).toEqual([`created ${first.record.id}`, `rotated ${first.record.id}`, `created ${minted.record.id}`]);
  });

  it(`the authoritative compare-and-set loses ${ATTEMPTS - 1} times and wins on attempt ${ATTEMPTS}: one successor, nothing from the lost attempts`, async () => {
    const first = await newFamily();
    store.fastLosses = 1;
    store.txLosses = ATTEMPTS - 1;
    const minted = await rotate(app, { mode: 'presented', secret: first.secret }, options(newKey()));
    expect(store.transactions).toBe(ATTEMPTS);
    expect(store.markRotatedCalls).toBe(ATTEMPTS);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id).sort()).toEqual([first.record.id, minted.record.id].sort());
    expect(events).toEqual([`created ${first.record.id}`, `rotated ${first.record.id}`, `created ${minted.record.id}`]);
  });

  it('a rival rotated first, no idempotency key: rule 3 answers already_rotated naming the rival successor, never a second successor', async () => {
    const first = await newFamily();
    let rival: MintedToken | undefined;
    store.beforeFastCommit = async () => {
      rival = await rotate(base, { mode: 'presented', secret: first.secret }, options());
    };
    const answer = await rotate(app, { mode: 'presented', secret: first.secret }, options()).catch((e: unknown) => e);
    expect(rival).toBeDefined();
    expect(answer).toBeInstanceOf(RotorError);
    expect(answer).toMatchObject({
      code: 'already_rotated',
      message: `token was already rotated; its successor is ${rival!.record.id}`,
      details: { successorId: rival!.record.id },
    });
    expect(store.fastCommits).toBe(1);
    expect(store.transactions).toBe(1);
    expect(store.markRotatedCalls).toBe(0);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id).sort()).toEqual([first.record.id, rival!.record.id].sort());
    expect(tokenState(tokens.find((t) => t.id === rival!.record.id)!, base.now())).toBe('active');
    expect(events).toEqual([`created ${first.record.id}`, `rotated ${first.record.id}`, `created ${rival!.record.id}`]);
  });

  it('a rival with the same idempotency key rotated first: the answer is its successor replayed, with the same secret', async () => {
    const first = await newFamily();
    const key = newKey();
    let rival: MintedToken | undefined;
    store.beforeFastCommit = async () => {
      rival = await rotate(base, { mode: 'presented', secret: first.secret }, options(key));
    };
    const answer = await rotate(app, { mode: 'presented', secret: first.secret }, options(key));
    expect(rival).toBeDefined();
    expect(answer.record.id).toBe(rival!.record.id);
    expect(answer.secret).toBe(rival!.secret);
    expect(store.transactions).toBe(1);
    expect(store.markRotatedCalls).toBe(0);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id).sort()).toEqual([first.record.id, rival!.record.id].sort());
    expect(events).toEqual([
      `created ${first.record.id}`,
      `rotated ${first.record.id}`,
      `created ${rival!.record.id}`,
      `replayed ${first.record.id}`,
    ]);
  });

  it(`losing every time: after exactly ${ATTEMPTS} authoritative attempts the answer is unavailable, and nothing was written`, async () => {
    const first = await newFamily();
    store.fastLosses = 1;
    store.txLosses = Number.POSITIVE_INFINITY;
    const answer = await rotate(app, { mode: 'presented', secret: first.secret }, options(newKey())).catch(
      (e: unknown) => e,
    );
    expect(answer).toBeInstanceOf(RotorError);
    expect(answer).toMatchObject({ code: 'unavailable', message: GAVE_UP });
    expect(store.fastCommits).toBe(1);
    expect(store.transactions).toBe(ATTEMPTS);
    expect(store.markRotatedCalls).toBe(ATTEMPTS);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id)).toEqual([first.record.id]);
    expect(tokens[0]).toMatchObject({ revokedAt: null, successorId: null, rotationKeyDigest: null });
    expect(tokenState(tokens[0]!, base.now())).toBe('active');
    expect(events).toEqual([`created ${first.record.id}`]);
  });

  it('an error other than a lost race in the transaction propagates unchanged, without a retry', async () => {
    const first = await newFamily();
    const failure = new Error('the disk is on fire');
    store.fastLosses = 1;
    store.txFailure = failure;
    const answer = await rotate(app, { mode: 'presented', secret: first.secret }, options()).catch((e: unknown) => e);
    expect(answer).toBe(failure);
    expect(store.transactions).toBe(1);
    expect(store.markRotatedCalls).toBe(1);
    const { tokens, events } = await written(first.record.familyId);
    expect(tokens.map((t) => t.id)).toEqual([first.record.id]);
    expect(events).toEqual([`created ${first.record.id}`]);
  });
});
